// Module IsthmusZMQ.
