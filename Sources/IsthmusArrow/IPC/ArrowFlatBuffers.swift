/// The table layouts of Arrow's Schema.fbs, Message.fbs and File.fbs, for the verifier,
/// and the slot numbers the encoder and decoder use.
enum ArrowFB {
    // Table numbers in `schema`.
    static let message = 0, schemaTable = 1, field = 2, keyValue = 3, dictionaryEncoding = 4
    static let intTable = 5, floatingPoint = 6, decimal = 7, date = 8, time = 9, timestamp = 10
    static let interval = 11, fixedSizeList = 12, map = 13, union = 14, fixedSizeBinary = 15
    static let duration = 16, empty = 17, recordBatch = 18, dictionaryBatch = 19, bodyCompression = 20
    static let footer = 21

    /// Tags of the `Type` union (Schema.fbs).
    enum TypeTag: UInt8 {
        case null = 1, int, floatingPoint, binary, utf8, bool, decimal, date, time, timestamp, interval
        case list, structType, union, fixedSizeBinary, fixedSizeList, map, duration
        case largeBinary, largeUtf8, largeList, runEndEncoded, binaryView, utf8View, listView, largeListView
    }

    /// Tags of the `MessageHeader` union (Message.fbs).
    enum HeaderTag: UInt8 {
        case schema = 1, dictionaryBatch, recordBatch, tensor, sparseTensor
    }

    static let typeTables: [UInt8: Int] = {
        var t: [UInt8: Int] = [:]
        for tag in UInt8(1)...26 { t[tag] = empty }
        t[TypeTag.int.rawValue] = intTable
        t[TypeTag.floatingPoint.rawValue] = floatingPoint
        t[TypeTag.decimal.rawValue] = decimal
        t[TypeTag.date.rawValue] = date
        t[TypeTag.time.rawValue] = time
        t[TypeTag.timestamp.rawValue] = timestamp
        t[TypeTag.interval.rawValue] = interval
        t[TypeTag.union.rawValue] = union
        t[TypeTag.fixedSizeBinary.rawValue] = fixedSizeBinary
        t[TypeTag.fixedSizeList.rawValue] = fixedSizeList
        t[TypeTag.map.rawValue] = map
        t[TypeTag.duration.rawValue] = duration
        return t
    }()

    static let schema = FBSchema(
        tables: [
            // Message: version, header (type, value), bodyLength, custom_metadata
            [.scalar(slot: 0, size: 2),
             .union(typeSlot: 1, valueSlot: 2, tables: [1: schemaTable, 2: dictionaryBatch, 3: recordBatch, 4: empty, 5: empty]),
             .scalar(slot: 3, size: 8), .vectorOfTables(slot: 4, table: keyValue)],
            // Schema: endianness, fields, custom_metadata, features
            [.scalar(slot: 0, size: 2), .vectorOfTables(slot: 1, table: field),
             .vectorOfTables(slot: 2, table: keyValue), .vector(slot: 3, elementSize: 8)],
            // Field: name, nullable, type (type, value), dictionary, children, custom_metadata
            [.string(slot: 0), .scalar(slot: 1, size: 1), .union(typeSlot: 2, valueSlot: 3, tables: typeTables),
             .table(slot: 4, table: dictionaryEncoding), .vectorOfTables(slot: 5, table: field),
             .vectorOfTables(slot: 6, table: keyValue)],
            // KeyValue: key, value
            [.string(slot: 0), .string(slot: 1)],
            // DictionaryEncoding: id, indexType, isOrdered, dictionaryKind
            [.scalar(slot: 0, size: 8), .table(slot: 1, table: intTable), .scalar(slot: 2, size: 1), .scalar(slot: 3, size: 2)],
            // Int: bitWidth, is_signed
            [.scalar(slot: 0, size: 4), .scalar(slot: 1, size: 1)],
            // FloatingPoint: precision
            [.scalar(slot: 0, size: 2)],
            // Decimal: precision, scale, bitWidth
            [.scalar(slot: 0, size: 4), .scalar(slot: 1, size: 4), .scalar(slot: 2, size: 4)],
            // Date: unit
            [.scalar(slot: 0, size: 2)],
            // Time: unit, bitWidth
            [.scalar(slot: 0, size: 2), .scalar(slot: 1, size: 4)],
            // Timestamp: unit, timezone
            [.scalar(slot: 0, size: 2), .string(slot: 1)],
            // Interval: unit
            [.scalar(slot: 0, size: 2)],
            // FixedSizeList: listSize
            [.scalar(slot: 0, size: 4)],
            // Map: keysSorted
            [.scalar(slot: 0, size: 1)],
            // Union: mode, typeIds
            [.scalar(slot: 0, size: 2), .vector(slot: 1, elementSize: 4)],
            // FixedSizeBinary: byteWidth
            [.scalar(slot: 0, size: 4)],
            // Duration: unit
            [.scalar(slot: 0, size: 2)],
            // Tables without fields (Null, Utf8, List, Struct_, ..., Tensor and SparseTensor are not read).
            [],
            // RecordBatch: length, nodes, buffers, compression, variadicBufferCounts
            [.scalar(slot: 0, size: 8), .vector(slot: 1, elementSize: 16), .vector(slot: 2, elementSize: 16),
             .table(slot: 3, table: bodyCompression), .vector(slot: 4, elementSize: 8)],
            // DictionaryBatch: id, data, isDelta
            [.scalar(slot: 0, size: 8), .table(slot: 1, table: recordBatch), .scalar(slot: 2, size: 1)],
            // BodyCompression: codec, method
            [.scalar(slot: 0, size: 1), .scalar(slot: 1, size: 1)],
            // Footer: version, schema, dictionaries, recordBatches, custom_metadata
            [.scalar(slot: 0, size: 2), .table(slot: 1, table: schemaTable), .vector(slot: 2, elementSize: 24),
             .vector(slot: 3, elementSize: 24), .vectorOfTables(slot: 4, table: keyValue)],
        ],
        names: ["Message", "Schema", "Field", "KeyValue", "DictionaryEncoding", "Int", "FloatingPoint", "Decimal",
                "Date", "Time", "Timestamp", "Interval", "FixedSizeList", "Map", "Union", "FixedSizeBinary",
                "Duration", "type", "RecordBatch", "DictionaryBatch", "BodyCompression", "Footer"])
}

/// Arrow metadata versions (Schema.fbs `MetadataVersion`). Readers accept V4 and V5; writers write V5.
public enum MetadataVersion: Int16, Sendable, Hashable, Comparable {
    /// 0.1.0 to 0.7.1 (V1 to V3): not readable here.
    case v1 = 0, v2, v3
    /// 0.8.0 to 0.17 (unions had a validity bitmap).
    case v4
    /// 1.0.0 and later: what Isthmus writes.
    case v5

    public static func < (a: MetadataVersion, b: MetadataVersion) -> Bool { a.rawValue < b.rawValue }
}
