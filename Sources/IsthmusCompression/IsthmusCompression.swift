// Module IsthmusCompression.
