/// Buffer-level concatenation of valid arrays of one type, for dictionary deltas.
enum ArrayConcatenation {
    static func concatenate(_ arrays: [ArrayData]) throws -> ArrayData {
        precondition(!arrays.isEmpty)
        if arrays.count == 1 { return arrays[0] }
        let type = arrays[0].type
        let total = try arrays.reduce(0) { acc, a in
            guard let t = checkedAdd(acc, a.length) else { throw ArrowError.invalid("expected a concatenated length that fits but found an overflow") }
            return t
        }
        let nulls = arrays.reduce(0) { $0 + $1.nullCount }

        func bits(_ pick: (ArrayData) -> Buffer?, defaultSet: Bool) -> Buffer {
            let out = BufferBuilder(capacity: (total + 7) / 8)
            out.appendZeros((total + 7) / 8)
            var k = 0
            for a in arrays {
                let b = pick(a)
                for i in 0..<a.length {
                    if let b { if Bitmap.get(b, a.offset + i) { out.setBit(k, true) } } else if defaultSet { out.setBit(k, true) }
                    k += 1
                }
            }
            return out.finish()
        }
        let validity: Buffer? = nulls > 0 && type.hasValidityBuffer ? bits({ $0.nullCount > 0 ? $0.buffers[0] : nil }, defaultSet: true) : nil

        func fixedBytes(_ width: Int, buffer index: Int) -> Buffer {
            let out = BufferBuilder(capacity: total * width)
            for a in arrays where a.length > 0 {
                out.append(UnsafeRawBufferPointer(rebasing: a.buffers[index]!.bytes[(a.offset * width)..<((a.offset + a.length) * width)]))
            }
            return out.finish()
        }

        /// Rebased offsets plus, per array, the child range it covers.
        func offsets(large: Bool) throws -> (Buffer, [Range<Int>]) {
            let out = BufferBuilder(capacity: (total + 1) * (large ? 8 : 4))
            var base = 0
            var ranges: [Range<Int>] = []
            if large { out.append(Int64(0)) } else { out.append(Int32(0)) }
            for a in arrays {
                if a.length == 0 { ranges.append(0..<0); continue }
                let first = a.valueRange(0).lowerBound
                let last = a.valueRange(a.length - 1).upperBound
                for i in 0..<a.length {
                    let end = a.valueRange(i).upperBound - first + base
                    if large { out.append(Int64(end)) } else {
                        guard end <= Int(Int32.max) else {
                            throw ArrowError.invalid("expected concatenated offsets to fit in 32 bits but found \(end)")
                        }
                        out.append(Int32(end))
                    }
                }
                base += last - first
                ranges.append(first..<last)
            }
            return (out.finish(), ranges)
        }

        switch type {
        case .null:
            return ArrayData(type: type, length: total, nullCount: total, buffers: [])
        case .bool:
            return ArrayData(type: type, length: total, nullCount: nulls, buffers: [validity, bits({ $0.buffers[1] }, defaultSet: false)])
        case .utf8, .largeUtf8, .binary, .largeBinary:
            let (o, ranges) = try offsets(large: type.hasLargeOffsets)
            let data = BufferBuilder(capacity: ranges.reduce(0) { $0 + $1.count })
            for (a, r) in zip(arrays, ranges) where !r.isEmpty {
                data.append(UnsafeRawBufferPointer(rebasing: a.buffers[2]!.bytes[r]))
            }
            return ArrayData(type: type, length: total, nullCount: nulls, buffers: [validity, o, data.finish()])
        case .list, .largeList, .map:
            let (o, ranges) = try offsets(large: type.hasLargeOffsets)
            let child = try concatenate(zip(arrays, ranges).map { a, r in a.children[0].slice(r.lowerBound, r.count) })
            return ArrayData(type: type, length: total, nullCount: nulls, buffers: [validity, o], children: [child])
        case .fixedSizeList(_, let size):
            let child = try concatenate(arrays.map { $0.children[0].slice($0.offset * size, $0.length * size) })
            return ArrayData(type: type, length: total, nullCount: nulls, buffers: [validity], children: [child])
        case .struct(let fields):
            let kids = try fields.indices.map { k in try concatenate(arrays.map { $0.children[k].slice($0.offset, $0.length) }) }
            return ArrayData(type: type, length: total, nullCount: nulls, buffers: [validity], children: kids)
        case .union(let mode, let fields, let typeIds):
            let ids = fixedBytes(1, buffer: 0)
            if mode == .sparse {
                let kids = try fields.indices.map { k in try concatenate(arrays.map { $0.children[k].slice($0.offset, $0.length) }) }
                return ArrayData(type: type, length: total, nullCount: 0, buffers: [ids], children: kids)
            }
            let out = BufferBuilder(capacity: total * 4)
            var bases = [Int](repeating: 0, count: fields.count)
            for a in arrays {
                for i in 0..<a.length {
                    let typeId = a.buffers[0]!.bytes.load(fromByteOffset: a.offset + i, as: Int8.self)
                    let k = typeIds.firstIndex(of: typeId) ?? 0
                    let o = Int(a.buffers[1]!.load(Int32.self, at: (a.offset + i) * 4)) + bases[k]
                    guard o <= Int(Int32.max) else { throw ArrowError.invalid("expected dense union offsets to fit in 32 bits but found \(o)") }
                    out.append(Int32(o))
                }
                for k in fields.indices { bases[k] += a.children[k].length }
            }
            let kids = try fields.indices.map { k in try concatenate(arrays.map { $0.children[k] }) }
            return ArrayData(type: type, length: total, nullCount: 0, buffers: [ids, out.finish()], children: kids)
        case .dictionary(let indexType, _, _):
            return try concatenateDictionaryArrays(arrays, indexType: indexType, total: total, nulls: nulls, validity: validity)
        default:
            guard let w = type.byteWidth else { throw ArrowError(.unsupported, "cannot concatenate \(type)") }
            return ArrayData(type: type, length: total, nullCount: nulls, buffers: [validity, fixedBytes(w, buffer: 1)])
        }
    }

    static func sameBuffers(_ a: ArrayData, _ b: ArrayData) -> Bool {
        guard a.length == b.length, a.offset == b.offset, a.buffers.count == b.buffers.count,
              a.children.count == b.children.count else { return false }
        for (x, y) in zip(a.buffers, b.buffers) {
            switch (x, y) {
            case (nil, nil): continue
            case (let x?, let y?): if x.storage !== y.storage || x.offset != y.offset || x.count != y.count { return false }
            default: return false
            }
        }
        for (x, y) in zip(a.children, b.children) where !sameBuffers(x, y) { return false }
        switch (a.dictionary, b.dictionary) {
        case (nil, nil): return true
        case (let x?, let y?): return sameBuffers(x, y)
        default: return false
        }
    }

    /// Slots, child slots and dictionary slots of an array: what comparing it value by value
    /// may visit (a null child can be long while its buffers are empty).
    static func logicalSize(_ a: ArrayData, limit: Int) -> Int {
        var total = a.length
        for c in a.children where total <= limit { total = total.addingReportingOverflow(logicalSize(c, limit: limit)).partialValue }
        if let d = a.dictionary, total <= limit { total = total.addingReportingOverflow(logicalSize(d, limit: limit)).partialValue }
        return total < 0 ? Int.max : total
    }

    /// Most slots `isPrefix` compares value by value; beyond it, it answers false (callers
    /// then fall back to a correct but less compact path).
    static let comparisonLimit = 1 << 22

    /// Whether the first `prefix.length` values of `whole` equal `prefix`.
    static func isPrefix(_ prefix: ArrayData, of whole: ArrayData) -> Bool {
        guard prefix.type == whole.type, prefix.length <= whole.length else { return false }
        if prefix.length == whole.length, sameBuffers(prefix, whole) { return true }
        // Fast path for flat types: compare validity and bytes slot by slot.
        if prefix.type.isBinaryLike || (prefix.type.isFixedWidth && prefix.type != .bool) {
            let width = prefix.type.byteWidth
            for i in 0..<prefix.length {
                let valid = prefix.isValid(i)
                guard valid == whole.isValid(i) else { return false }
                guard valid else { continue }
                let a: UnsafeRawBufferPointer, b: UnsafeRawBufferPointer
                if let w = width {
                    a = UnsafeRawBufferPointer(rebasing: prefix.buffers[1]!.bytes[((prefix.offset + i) * w)..<((prefix.offset + i + 1) * w)])
                    b = UnsafeRawBufferPointer(rebasing: whole.buffers[1]!.bytes[((whole.offset + i) * w)..<((whole.offset + i + 1) * w)])
                } else {
                    a = prefix.bytes(i)
                    b = whole.bytes(i)
                }
                guard a.count == b.count, a.elementsEqual(b) else { return false }
            }
            return true
        }
        guard logicalSize(prefix, limit: comparisonLimit) <= comparisonLimit,
              logicalSize(whole, limit: comparisonLimit) <= comparisonLimit else { return false }
        for i in 0..<prefix.length where prefix.value(at: i) != whole.value(at: i) { return false }
        return true
    }

    private static func concatenateDictionaryArrays(_ arrays: [ArrayData], indexType: DataType, total: Int, nulls: Int, validity: Buffer?) throws -> ArrayData {
        let width = indexType.byteWidth!
        func indices() -> Buffer {
            let out = BufferBuilder(capacity: total * width)
            for a in arrays where a.length > 0 {
                out.append(UnsafeRawBufferPointer(rebasing: a.buffers[1]!.bytes[(a.offset * width)..<((a.offset + a.length) * width)]))
            }
            return out.finish()
        }
        // Common case (deltas of nested dictionaries): every dictionary is a prefix of the longest.
        let longest = arrays.map { $0.dictionary! }.max { $0.length < $1.length }!
        if arrays.allSatisfy({ isPrefix($0.dictionary!, of: longest) }) {
            return ArrayData(type: arrays[0].type, length: total, nullCount: nulls, buffers: [validity, indices()], dictionary: longest)
        }
        // Otherwise: concatenate the dictionaries and shift each array's indices.
        let dictionary = try concatenate(arrays.map { $0.dictionary! })
        let out = BufferBuilder(capacity: total * width)
        var base = 0
        let limit: Int = switch indexType {
        case .int8: Int(Int8.max)
        case .int16: Int(Int16.max)
        case .int32: Int(Int32.max)
        case .uint8: Int(UInt8.max)
        case .uint16: Int(UInt16.max)
        case .uint32: Int(UInt32.max)
        default: Int.max
        }
        for a in arrays {
            for i in 0..<a.length {
                let key = a.isValid(i) ? a.dictionaryIndex(i, indexType: indexType) + base : 0
                guard key <= limit else {
                    throw ArrowError.invalid("expected concatenated dictionary indices to fit \(indexType) but found \(key)")
                }
                switch indexType {
                case .int8: out.append(Int8(key))
                case .int16: out.append(Int16(key))
                case .int32: out.append(Int32(key))
                case .uint8: out.append(UInt8(key))
                case .uint16: out.append(UInt16(key))
                case .uint32: out.append(UInt32(key))
                case .uint64: out.append(UInt64(key))
                default: out.append(Int64(key))
                }
            }
            base += a.dictionary!.length
        }
        return ArrayData(type: arrays[0].type, length: total, nullCount: nulls, buffers: [validity, out.finish()], dictionary: dictionary)
    }
}
