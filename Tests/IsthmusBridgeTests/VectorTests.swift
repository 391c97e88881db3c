import Foundation
import IsthmusArrow
import Testing
@testable import IsthmusBridge

/// The golden vectors in bridge-protocol/vectors, decoded and re-encoded by the Swift side
/// (the Python suite does the same with the same files).
enum Vectors {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let folder = root.appendingPathComponent("bridge-protocol/vectors")

    static func load(_ dir: URL) -> [[String: Any]] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return files.filter { $0.hasSuffix(".json") }.sorted().compactMap { name in
            guard let data = FileManager.default.contents(atPath: dir.appendingPathComponent(name).path) else { return nil }
            return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        }
    }

    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = hex.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
        return out
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}

@Suite("Protocol vectors")
struct VectorTests {
    @Test("there are valid and invalid vectors to check")
    func present() {
        #expect(Vectors.load(Vectors.folder).count >= 10)
        #expect(Vectors.load(Vectors.folder.appendingPathComponent("invalid")).count >= 5)
    }

    @Test("every valid vector decodes to its documented meaning and re-encodes byte for byte")
    func valid() throws {
        for v in Vectors.load(Vectors.folder) {
            let name = v["name"] as! String
            let frames = (v["frames_hex"] as! [String]).map(Vectors.bytes)
            let decoded = v["decoded"] as! [String: Any]
            let env = try frames[0].withUnsafeBytes { try Envelope.decode($0) }
            #expect(env.kind.description == decoded["kind"] as? String, "\(name)")
            #expect([Int(env.major), Int(env.minor)] == decoded["version"] as? [Int], "\(name)")
            #expect(Int(env.flags) == decoded["flags"] as? Int, "\(name)")
            #expect(Int(env.stage) == decoded["stage"] as? Int, "\(name)")
            #expect(Int(env.attempt) == decoded["attempt"] as? Int, "\(name)")
            #expect(UInt64(env.sequence) == (decoded["sequence"] as? NSNumber)?.uint64Value, "\(name)")
            #expect(Vectors.hex(env.encoded) == Vectors.hex(frames[0]), "\(name) re-encoded")
            if let box = decoded["mailbox_hex"] as? String {
                let bytes = Vectors.bytes(box)
                let got = try bytes.withUnsafeBytes { try MailboxMessage.decode($0) }
                #expect(got == frames, "\(name): mailbox decoded")
                var again = [UInt8](repeating: 0xAA, count: bytes.count)
                let pieces = frames.map { f in f.withUnsafeBytes { Buffer(copying: $0) } }
                let fits = again.withUnsafeMutableBytes { MailboxMessage.encode(pieces.map(\.bytes), into: $0) }
                #expect(fits && again == bytes, "\(name): mailbox re-encoded")
            }
            let side: MessageRules.Side = (v["sender"] as? String) == "worker" ? .worker : .host
            try MessageRules.check(env, frames: frames.count, from: side)
            let json = frames.count > 1 ? frames[1] : []
            switch env.kind {
            case .hello:
                let h = try json.withUnsafeBytes { try ControlDocuments.decode(ControlDocuments.Hello.self, $0, what: "HELLO") }
                #expect(h.token == (decoded["json"] as! [String: Any])["token"] as? String)
            case .ready:
                let r = try json.withUnsafeBytes { try ControlDocuments.decode(ControlDocuments.Ready.self, $0, what: "READY") }
                #expect(r.stages.count == ((decoded["json"] as! [String: Any])["stages"] as! [Any]).count)
                #expect(r.shm == (decoded["json"] as! [String: Any])["shm"] as? Bool, "\(name)")
                #expect(r.doorbell == (decoded["json"] as! [String: Any])["doorbell"] as? Bool, "\(name)")
            case .open:
                let o = try json.withUnsafeBytes { try ControlDocuments.decode(ControlDocuments.Open.self, $0, what: "OPEN") }
                let offer = (decoded["json"] as! [String: Any])["shm"] as? [String: Any]
                #expect(o.shm?.path == offer?["path"] as? String && o.shm?.size == offer?["size"] as? Int, "\(name)")
                let bell = (decoded["json"] as! [String: Any])["doorbell"] as? [String: Any]
                #expect(o.doorbell?.replyFifo == bell?["reply_fifo"] as? String && o.doorbell?.replyOffset == bell?["reply_offset"] as? Int && o.doorbell?.slots == bell?["slots"] as? Int, "\(name)")
                #expect(ControlDocuments.encode(o) == json, "\(name) re-encoded")
                #expect(o.stages.first?.udf == (((decoded["json"] as! [String: Any])["stages"] as! [[String: Any]]).first?["udf"] as? String))
                let schema = try IPCEncoder.decodeSchemaMessage(Buffer(frames[2]))
                let expected = (decoded["schemas"] as! [[[String: Any]]])[0]
                #expect(schema.fields.map(\.name) == expected.map { $0["name"] as! String })
                #expect(schema.fields.map(\.type.description) == expected.map { $0["type"] as! String })
            case .error:
                let e = try json.withUnsafeBytes { try ControlDocuments.decode(ControlDocuments.ErrorReport.self, $0, what: "ERROR") }
                #expect(e.kind == (decoded["json"] as! [String: Any])["kind"] as? String)
            case .release:
                let offsets = try frames[1].withUnsafeBytes { try RegionDescriptors.decodeRelease($0) }
                let want = (decoded["regions"] as! [String: Any])["offsets"] as! [Int]
                #expect(offsets == want, "\(name)")
                #expect(RegionDescriptors.encodeRelease(offsets) == frames[1], "\(name) re-encoded")
            case .batch where env.flags & Envelope.fileFlag != 0:
                let f = decoded["file"] as! [String: Any]
                let rows = MessageRows(schemaOffset: f["schema_offset"] as! Int, schemaLength: f["schema_length"] as! Int,
                                       messageOffset: f["offset"] as! Int, messageLength: f["length"] as! Int,
                                       rowOffset: f["row_offset"] as! Int, rowCount: f["rows"] as! Int)
                let d = RegionDescriptors.FileBatch(path: f["path"] as! String, device: UInt64(f["device"] as! Int),
                                                    inode: UInt64(f["inode"] as! Int), fileSize: f["size"] as! Int,
                                                    rows: rows, resultOffset: f["result_offset"] as! Int, resultCapacity: f["result_capacity"] as! Int)
                #expect(d.encoded == frames[1], "\(name)")
                #expect(frames.count == 2 && env.flags & Envelope.shmFlag != 0, "\(name): FILE comes with SHM")
            case .batch where env.flags & Envelope.shmFlag != 0:
                let r = decoded["regions"] as! [String: Int]
                let d = RegionDescriptors.Batch(inputOffset: r["input_offset"]!, inputLength: r["input_length"]!,
                                                resultOffset: r["result_offset"]!, resultCapacity: r["result_capacity"]!)
                #expect(d.encoded == frames[1], "\(name)")
                #expect(frames.count == 2)
            case .result where env.flags & Envelope.shmFlag != 0:
                let r = decoded["regions"] as! [String: Any]
                let offset = r["offset"] as! Int, length = r["length"] as! Int
                let offered = RegionDescriptors.Batch(inputOffset: 0, inputLength: 8, resultOffset: offset, resultCapacity: length + 64)
                let d = try frames[1].withUnsafeBytes { try RegionDescriptors.Result.decode($0, offered: offered) }
                #expect(d == RegionDescriptors.Result(offset: offset, length: length, released: r["released"] as! [Int]), "\(name)")
                #expect(d.encoded == frames[1], "\(name) re-encoded")
            case .batch, .result:
                let payload = decoded["payload"] as! [String: Any]
                let rowErrors = env.flags & Envelope.rowErrorsFlag != 0
                if rowErrors {
                    let doc = try frames[1].withUnsafeBytes { try ControlDocuments.decode(ControlDocuments.RowFailures.self, $0, what: "row failures") }
                    let expected = (decoded["json"] as! [String: Any])["failed"] as! [[String: Any]]
                    #expect(doc.failed.map(\.row) == expected.map { $0["row"] as! Int }, "\(name)")
                }
                let stream = Buffer(Array(frames.dropFirst(rowErrors ? 2 : 1).joined()))
                let reader = try IPCStreamReader(buffer: stream)
                var batches: [RecordBatch] = []
                while let b = try reader.next() { batches.append(b) }
                let expected = payload["batches"] as! [[String: Any]]
                #expect(batches.count == expected.count, "\(name)")
                for (b, e) in zip(batches, expected) {
                    #expect(b.length == e["num_rows"] as? Int)
                    let columns = e["columns"] as! [String: [Any]]
                    for (i, f) in b.schema.fields.enumerated() {
                        let values = columns[f.name]!
                        for (row, want) in values.enumerated() {
                            let got = b.columns[i].value(at: row)
                            switch (got, want) {
                            case (.null, is NSNull): break
                            case (.int(let g), let w as NSNumber): #expect(g == w.int64Value)
                            case (.float(let g), let w as NSNumber): #expect(g == w.doubleValue)
                            case (.string(let g), let w as String): #expect(g == w)
                            default: Issue.record("\(name): column \(f.name) row \(row): expected \(want) but found \(got)")
                            }
                        }
                    }
                }
            default:
                break
            }
        }
    }

    @Test("every invalid vector is rejected for the documented reason")
    func invalid() {
        for v in Vectors.load(Vectors.folder.appendingPathComponent("invalid")) {
            let name = v["name"] as! String
            let frames = (v["frames_hex"] as! [String]).map(Vectors.bytes)
            let side: MessageRules.Side = (v["sender"] as? String) == "worker" ? .worker : .host
            do {
                let env = try frames[0].withUnsafeBytes { try Envelope.decode($0) }
                try MessageRules.check(env, frames: frames.count, from: side)
                Issue.record("\(name): expected a rejection (\(v["rejection"] ?? "")) but it was accepted")
            } catch let error as ProtocolViolation {
                let reason = v["rejection"] as? String ?? ""
                let words = ["magic": "magic", "version": "major version", "length": "24-byte envelope", "kind": "message kind",
                             "reserved": "reserved", "frames": "frames", "direction": "expected a"]
                #expect(error.message.contains(words[reason] ?? reason), "\(name): \(error.message)")
                #expect(error.versionMismatch == (reason == "version"), "\(name)")
            } catch {
                Issue.record("\(name): unexpected error \(error)")
            }
        }
    }
}
