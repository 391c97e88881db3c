/// Row-selection kernels the pipeline needs: gather rows by index and concatenate batches.
/// Fixed-width, bool and utf8/binary columns take fast paths; every other type goes through
/// the generic value path, which is slower but exact for every type.
public enum Kernels {
    /// Rows of `array` at `indices`, in that order.
    public static func take(_ array: ArrayData, _ indices: [Int]) -> ArrayData {
        switch array.type {
        case .dictionary:
            break
        case _ where array.type.isFixedWidth && array.type.byteWidth! > 0:
            let w = array.type.byteWidth!
            let out = BufferBuilder(capacity: indices.count * w)
            let src = array.buffers[1]!.bytes
            let validity = takeValidity(array, indices)
            for i in indices {
                let start = (array.offset + i) * w
                out.append(UnsafeRawBufferPointer(rebasing: src[start..<start + w]))
            }
            return ArrayData(type: array.type, length: indices.count, nullCount: validity.1, buffers: [validity.0, out.finish()])
        case .utf8, .binary:
            let data = BufferBuilder(capacity: 1024)
            let offsets = BufferBuilder(capacity: (indices.count + 1) * 4)
            offsets.append(Int32(0))
            let validity = takeValidity(array, indices)
            for i in indices {
                if array.isValid(i) { data.append(array.bytes(i)) }
                offsets.append(Int32(truncatingIfNeeded: data.count))
            }
            return ArrayData(type: array.type, length: indices.count, nullCount: validity.1,
                             buffers: [validity.0, offsets.finish(), data.finish()])
        default:
            break
        }
        let b = ArrayBuilder(array.type)
        for i in indices { try! b.append(array.value(at: i)) }
        return b.finish()
    }

    private static func takeValidity(_ array: ArrayData, _ indices: [Int]) -> (Buffer?, Int) {
        guard array.nullCount > 0 else { return (nil, 0) }
        let out = BufferBuilder(capacity: (indices.count + 7) / 8)
        out.appendZeros((indices.count + 7) / 8)
        var nulls = 0
        for (k, i) in indices.enumerated() {
            if array.isValid(i) { out.setBit(k, true) } else { nulls += 1 }
        }
        return (nulls > 0 ? out.finish() : nil, nulls)
    }

    /// Rows of `batch` at `indices`.
    public static func take(_ batch: RecordBatch, _ indices: [Int]) -> RecordBatch {
        try! RecordBatch(schema: batch.schema, columns: batch.columns.map { take($0, indices) }, length: indices.count)
    }

    /// Rows of `batch` where `mask` is true (copies nothing when every row is kept).
    public static func filter(_ batch: RecordBatch, _ mask: [Bool]) -> RecordBatch {
        let indices = mask.indices.filter { mask[$0] }
        if indices.count == batch.length { return batch }
        return take(batch, indices)
    }

    /// One array holding the rows of `arrays` in order.
    public static func concatenate(_ arrays: [ArrayData]) -> ArrayData {
        precondition(!arrays.isEmpty)
        if arrays.count == 1 { return arrays[0] }
        let type = arrays[0].type
        let total = arrays.reduce(0) { $0 + $1.length }
        let nulls = arrays.reduce(0) { $0 + $1.nullCount }
        func validity() -> Buffer? {
            guard nulls > 0 else { return nil }
            let out = BufferBuilder(capacity: (total + 7) / 8)
            out.appendZeros((total + 7) / 8)
            var k = 0
            for a in arrays {
                for i in 0..<a.length { if a.isValid(i) { out.setBit(k, true) }; k += 1 }
            }
            return out.finish()
        }
        switch type {
        case .dictionary:
            break
        case _ where type.isFixedWidth && type.byteWidth! > 0:
            let w = type.byteWidth!
            let out = BufferBuilder(capacity: total * w)
            for a in arrays {
                out.append(UnsafeRawBufferPointer(rebasing: a.buffers[1]!.bytes[a.offset * w ..< (a.offset + a.length) * w]))
            }
            return ArrayData(type: type, length: total, nullCount: nulls, buffers: [validity(), out.finish()])
        case .utf8, .binary:
            let data = BufferBuilder(capacity: 1024)
            let offsets = BufferBuilder(capacity: (total + 1) * 4)
            offsets.append(Int32(0))
            for a in arrays {
                for i in 0..<a.length {
                    data.append(a.bytes(i))
                    offsets.append(Int32(truncatingIfNeeded: data.count))
                }
            }
            return ArrayData(type: type, length: total, nullCount: nulls, buffers: [validity(), offsets.finish(), data.finish()])
        default:
            break
        }
        let b = ArrayBuilder(type)
        for a in arrays { for i in 0..<a.length { try! b.append(a.value(at: i)) } }
        return b.finish()
    }

    /// One batch holding the rows of `batches` (same schema) in order.
    public static func concatenate(_ batches: [RecordBatch]) -> RecordBatch {
        precondition(!batches.isEmpty)
        if batches.count == 1 { return batches[0] }
        let columns = batches[0].columns.indices.map { c in concatenate(batches.map { $0.columns[c] }) }
        return try! RecordBatch(schema: batches[0].schema, columns: columns, length: batches.reduce(0) { $0 + $1.length })
    }
}
