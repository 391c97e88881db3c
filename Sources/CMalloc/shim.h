#pragma once
// glibc's allocator controls (mallopt), for IsthmusArrow's HeapPolicy.
#include <malloc.h>
