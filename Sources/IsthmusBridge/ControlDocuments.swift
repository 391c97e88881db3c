import Foundation

/// JSON control documents carried in frame 1 of control messages (PROTOCOL.md §Messages).
/// Keys are snake_case on the wire.
public enum ControlDocuments {
    /// HELLO, worker → host.
    public struct Hello: Codable, Sendable {
        public var `protocol`: String
        public var helper: String
        public var pid: Int
        public var slot: Int
        public var token: String
        public var python: String?
        public var pyarrow: String?
        public var capabilities: [String]?
    }

    /// One stage of OPEN.
    public struct Stage: Codable, Sendable {
        public var name: String
        public var udf: String
        public var options: [String: String]
        public init(name: String, udf: String, options: [String: String] = [:]) {
            self.name = name
            self.udf = udf
            self.options = options
        }
    }

    /// OPEN, host → worker.
    public struct Open: Codable, Sendable {
        public var stages: [Stage]
        public var heartbeatMs: Int
        public var missedHeartbeats: Int
        public var slot: Int
        public var workers: Int
        /// The shared arena this worker may map (1.1, §17); only offered to local workers that
        /// announced the `shm` capability.
        public var shm: ShmOffer?
        /// This worker's doorbells (§18); only offered with `shm`, to local workers that
        /// announced the `doorbell` capability, when the arena has room for the mailboxes.
        public var doorbell: DoorbellOffer?
    }

    /// OPEN `doorbell`: the two FIFOs and the mailboxes in the arena: `slots` request
    /// mailboxes of `size` bytes each from `requestOffset`, as many reply mailboxes from
    /// `replyOffset` (absent `slots`: one of each).
    public struct DoorbellOffer: Codable, Sendable, Equatable {
        public var requestFifo: String
        public var replyFifo: String
        public var requestOffset: Int
        public var replyOffset: Int
        public var size: Int
        public var slots: Int?
    }

    /// OPEN `shm`: where the arena is and how big it is.
    public struct ShmOffer: Codable, Sendable, Equatable {
        public var path: String
        public var size: Int
    }

    /// One stage of READY.
    public struct ReadyStage: Codable, Sendable {
        public var name: String
        public var kind: String
        public var input: String
        public var hasSchema: Bool
    }

    /// READY, worker → host.
    public struct Ready: Codable, Sendable {
        public var stages: [ReadyStage]
        /// Whether the worker mapped the arena OPEN offered (absent: no).
        public var shm: Bool?
        /// Why it could not, when it could not.
        public var shmError: String?
        /// Whether the worker opened the doorbells OPEN offered (absent: no), and why not.
        public var doorbell: Bool?
        public var doorbellError: String?
    }

    /// ERROR, worker → host.
    public struct ErrorReport: Codable, Sendable {
        public var kind: String
        public var excType: String?
        public var message: String
        public var traceback: String?
        public var stage: String?
        public var rowStart: Int?
        public var rowEnd: Int?
        public var retryable: Bool?
    }

    /// One input row the worker isolated as failing (RESULT with the ROW_ERRORS flag).
    public struct RowFailure: Codable, Sendable {
        /// Index of the row in the batch (0-based).
        public var row: Int
        public var stage: String?
        public var excType: String?
        public var message: String
        public var traceback: String?
    }

    /// The JSON frame of a RESULT with the ROW_ERRORS flag.
    public struct RowFailures: Codable, Sendable {
        public var failed: [RowFailure]
    }

    /// HEARTBEAT, worker → host.
    public struct Heartbeat: Codable, Sendable {
        public var rssBytes: Int?
        public var batches: Int?
    }

    /// CLOSE, host → worker.
    public struct Close: Codable, Sendable {
        public var reason: String
    }

    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(value)) ?? Data("{}".utf8))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: UnsafeRawBufferPointer, what: String) throws(ProtocolViolation) -> T {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(T.self, from: Data(bytes))
        } catch {
            let preview = String(decoding: bytes.prefix(80), as: UTF8.self)
            throw ProtocolViolation("expected a \(what) JSON document but found \(bytes.count) bytes that do not decode (\(preview))")
        }
    }
}
