import IsthmusArrow

/// How a Python stage spreads batches over its worker slots.
public enum Partitioning: Sendable, Equatable {
    /// Each batch goes to the least busy worker (the default).
    case roundRobin
    /// Every row with the same value of `key` goes to the same slot, also after that slot's
    /// worker is restarted. (State a Python worker keeps in memory dies with it.)
    case hash(key: String)
    /// Every batch goes to every worker (control data such as new model weights).
    case broadcast
}

/// Splits a batch by the hash of a key column. Pure; the hash is FNV-1a over the value's
/// bytes, so it is the same in every run and on every machine.
public struct HashPartitioner: Sendable {
    /// Column index of the key.
    public let column: Int
    /// Number of slots.
    public let slots: Int

    public init(column: Int, slots: Int) {
        self.column = column
        self.slots = Swift.max(1, slots)
    }

    /// The slot of every row.
    public func assign(_ batch: RecordBatch) -> [Int] {
        let a = batch.columns[column]
        return (0..<batch.length).map { Int(HashPartitioner.hash(a, $0) % UInt64(slots)) }
    }

    /// The rows of `batch` grouped per slot (slots without rows are left out), order kept within each.
    public func split(_ batch: RecordBatch) -> [(slot: Int, batch: RecordBatch)] {
        let owners = assign(batch)
        var groups = Array(repeating: [Int](), count: slots)
        for (row, s) in owners.enumerated() { groups[s].append(row) }
        return groups.enumerated().compactMap { s, rows in
            rows.isEmpty ? nil : (s, rows.count == batch.length ? batch : Kernels.take(batch, rows))
        }
    }

    /// FNV-1a 64 of slot `i` of `array` (nulls hash to a fixed value).
    public static func hash(_ array: ArrayData, _ i: Int) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: UnsafeRawBufferPointer) { for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 } }
        guard array.isValid(i) else { return h }
        switch array.type {
        case .utf8, .binary, .largeUtf8, .largeBinary:
            mix(array.bytes(i))
        case _ where array.type.isFixedWidth && array.type.byteWidth! > 0:
            let w = array.type.byteWidth!
            mix(UnsafeRawBufferPointer(rebasing: array.buffers[1]!.bytes[(array.offset + i) * w ..< (array.offset + i + 1) * w]))
        default:
            var text = "\(array.value(at: i))"
            text.withUTF8 { mix(UnsafeRawBufferPointer($0)) }
        }
        return h
    }
}
