// Module Isthmus.
