#pragma once
// glibc's allocator controls (mallopt), for IsthmusBridge's HeapPolicy.
#include <malloc.h>
