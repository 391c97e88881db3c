// libFuzzer entry point over Arrow IPC decoding (stream and file). Compiled together with the
// IsthmusArrow sources as one module by `Tests/fuzz/run.sh` (`make fuzz`), with
// -sanitize=fuzzer,address: a second build, for long local runs. Crashes it finds become
// regression inputs under Tests/fuzz/regressions/ (the deterministic suites read them).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIPC(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let buffer = Buffer(copying: UnsafeRawBufferPointer(start: data, count: size))
    if let reader = try? IPCStreamReader(buffer: buffer) {
        while let batch = try? reader.next() {
            for i in 0..<min(batch.length, 64) { _ = batch.row(i) }
        }
    }
    if let file = try? IPCFileReader(buffer: buffer) {
        for k in 0..<min(file.recordBatchCount, 16) {
            if let batch = try? file.recordBatch(at: k) {
                for i in 0..<min(batch.length, 64) { _ = batch.row(i) }
            }
        }
    }
    return 0
}
