// Module IsthmusBridge.
