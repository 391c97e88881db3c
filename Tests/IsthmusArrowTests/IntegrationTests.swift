import Foundation
import IsthmusArrow
import IsthmusCompression
import Testing

/// Every reference file under `../shared/arrow-testing/integration/` is read, compared value
/// by value with its `.json.gz`, written back by us (stream and file) and read again.
@Suite("Arrow integration reference files")
struct IntegrationTests {
    /// Cases Isthmus cannot support, with the reason. Each listed case is still reported by
    /// `skipListIsExplicit` so a skip is never silent.
    static let skipped: [String: String] = [:]

    static let cases: [String] = {
        ((try? IPCTestSupport.integrationCases()) ?? []).map { "\($0.folder)/\($0.name)" }
    }()

    @Test("fixtures are present")
    func fixturesPresent() throws {
        let cases = try IPCTestSupport.integrationCases()
        #expect(cases.count >= 36, "expected the integration reference files under \(IPCTestSupport.arrowTesting.path)")
    }

    @Test("skip list is explicit")
    func skipListIsExplicit() {
        for (name, reason) in Self.skipped.sorted(by: { $0.key < $1.key }) {
            print("SKIPPED integration case \(name): \(reason)")
        }
        #expect(Self.skipped.keys.allSatisfy { Self.cases.contains($0) }, "every skipped case must exist")
    }

    /// The schema as the comparison with JSON sees it: metadata is a map (the reference
    /// binaries keep C++'s key order, the JSON another), and map entry/key/value names are
    /// canonical (the C++ writer that made `generated_map_non_canonical` renamed them, the
    /// JSON keeps the originals; names inside a map type carry no meaning in Arrow).
    static func normalized(_ schema: Schema) -> Schema {
        func field(_ f: Field) -> Field {
            Field(f.name, type(f.type), nullable: f.nullable, metadata: f.metadata.sorted { ($0.key, $0.value) < ($1.key, $1.value) })
        }
        func type(_ t: DataType) -> DataType {
            switch t {
            case .list(let f): return .list(field(f))
            case .largeList(let f): return .largeList(field(f))
            case .fixedSizeList(let f, let n): return .fixedSizeList(field(f), n)
            case .struct(let fs): return .struct(fs.map(field))
            case .union(let m, let fs, let ids): return .union(m, fs.map(field), typeIds: ids)
            case .dictionary(let i, let v, let o): return .dictionary(index: i, value: type(v), ordered: o)
            case .map(let e, let sorted):
                var entries = field(e)
                entries.name = "entries"
                if case .struct(var kv) = entries.type, kv.count == 2 {
                    kv[0].name = "key"
                    kv[1].name = "value"
                    entries.type = .struct(kv)
                }
                return .map(entries: entries, keysSorted: sorted)
            default: return t
            }
        }
        return Schema(schema.fields.map(field), metadata: schema.metadata.sorted { ($0.key, $0.value) < ($1.key, $1.value) })
    }

    static func dumped(_ value: some Any) -> String {
        var s = ""
        dump(value, to: &s)
        return s
    }

    static func compare(_ batches: [RecordBatch], _ json: IntegrationJSON, _ what: String) throws {
        #expect(batches.count == json.batches.count, "\(what): batch count")
        for (b, batch) in batches.enumerated() where b < json.batches.count {
            #expect(batch.length == json.batches[b].count, "\(what): batch \(b) length")
            let expected = try json.expected(batch: b)
            for (c, column) in batch.columns.enumerated() {
                let got = column.allValues
                if got != expected[c] {
                    let first = zip(got, expected[c]).enumerated().first { $0.element.0 != $0.element.1 }
                    Issue.record("\(what): batch \(b) column '\(json.schema.fields[c].name)' differs at row \(first?.offset ?? -1): got \(first.map { "\($0.element.0)" } ?? "count \(got.count)") expected \(first.map { "\($0.element.1)" } ?? "count \(expected[c].count)")")
                }
            }
        }
    }

    @Test("read, compare with JSON, write back, read again", arguments: cases)
    func fixture(_ name: String) throws {
        if let reason = Self.skipped[name] {
            print("SKIPPED \(name): \(reason)")
            return
        }
        let parts = name.split(separator: "/").map(String.init)
        let json = try IntegrationJSON(try IPCTestSupport.json(IPCTestSupport.fixture(parts[0], parts[1] + ".json.gz")))
        var read: [(String, Schema, [RecordBatch])] = []
        let streamURL = IPCTestSupport.fixture(parts[0], parts[1] + ".stream")
        if FileManager.default.fileExists(atPath: streamURL.path) {
            let (schema, batches) = try IPCTestSupport.readStream(try IPCTestSupport.readFile(streamURL))
            #expect(Self.normalized(schema) == Self.normalized(json.schema), "\(name).stream schema:\n\(Self.dumped(schema))\nexpected:\n\(Self.dumped(json.schema))")
            try Self.compare(batches, json, "\(name).stream")
            read.append(("stream", schema, batches))
        }
        let fileURL = IPCTestSupport.fixture(parts[0], parts[1] + ".arrow_file")
        if FileManager.default.fileExists(atPath: fileURL.path) {
            let (schema, batches) = try IPCTestSupport.readFile(try IPCTestSupport.readFile(fileURL))
            #expect(Self.normalized(schema) == Self.normalized(json.schema), "\(name).arrow_file schema")
            try Self.compare(batches, json, "\(name).arrow_file")
            read.append(("file", schema, batches))
        }
        #expect(!read.isEmpty, "\(name): no .stream or .arrow_file")
        // Written back by us, read again by us: equal.
        for (kind, schema, batches) in read {
            let stream = try IPCTestSupport.writeStream(schema, batches)
            let (s1, b1) = try IPCTestSupport.readStream(stream)
            #expect(s1 == schema, "\(name) (\(kind)) rewritten stream schema")
            #expect(b1 == batches, "\(name) (\(kind)) rewritten stream batches")
            let file = try IPCTestSupport.writeFile(schema, batches)
            let (s2, b2) = try IPCTestSupport.readFile(file)
            #expect(s2 == schema, "\(name) (\(kind)) rewritten file schema")
            #expect(b2 == batches, "\(name) (\(kind)) rewritten file batches")
        }
    }

    @Test("the incremental reader gives the same batches as the zero-copy reader", arguments: cases)
    func incremental(_ name: String) throws {
        if Self.skipped[name] != nil { return }
        let parts = name.split(separator: "/").map(String.init)
        let url = IPCTestSupport.fixture(parts[0], parts[1] + ".stream")
        guard FileManager.default.fileExists(atPath: url.path) else { return }
        let buffer = try IPCTestSupport.readFile(url)
        let (schema, batches) = try IPCTestSupport.readStream(buffer)
        // A source that hands out at most 7 bytes per read.
        final class Trickle: ByteSource {
            let bytes: [UInt8]
            var position = 0
            init(_ bytes: [UInt8]) { self.bytes = bytes }
            func read(into: UnsafeMutableRawBufferPointer) throws -> Int {
                let n = Swift.min(7, into.count, bytes.count - position)
                for i in 0..<n { into[i] = bytes[position + i] }
                position += n
                return n
            }
        }
        let reader = try IPCStreamReader(source: Trickle(buffer.array), options: IPCTestSupport.readOptions)
        #expect(reader.schema == schema)
        #expect(try reader.readAll() == batches)
    }
}
