/// Message kinds of protocol 1.1 (bridge-protocol/PROTOCOL.md).
public struct MessageKind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let hello = MessageKind(rawValue: 1)
    public static let open = MessageKind(rawValue: 2)
    public static let ready = MessageKind(rawValue: 3)
    public static let batch = MessageKind(rawValue: 4)
    public static let result = MessageKind(rawValue: 5)
    public static let error = MessageKind(rawValue: 6)
    public static let heartbeat = MessageKind(rawValue: 7)
    public static let close = MessageKind(rawValue: 8)
    public static let bye = MessageKind(rawValue: 9)
    /// Worker → host (1.1, shared-memory data plane): arena regions the worker no longer uses.
    public static let release = MessageKind(rawValue: 10)
    static let names = [1: "HELLO", 2: "OPEN", 3: "READY", 4: "BATCH", 5: "RESULT", 6: "ERROR", 7: "HEARTBEAT", 8: "CLOSE", 9: "BYE", 10: "RELEASE"]
    /// Whether 1.1 defines this kind.
    public var isKnown: Bool { (1...10).contains(rawValue) }
    public var description: String { MessageKind.names[Int(rawValue)] ?? "kind \(rawValue)" }
}

/// Frame 0 of every message: 24 bytes, little-endian.
///
/// ```
/// 0 magic "ISTH" | 4 major | 5 minor | 6 kind | 7 flags | 8 stage u16 | 10 reserved u16 | 12 attempt u32 | 16 sequence u64
/// ```
public struct Envelope: Hashable, Sendable {
    /// Size of the encoded envelope.
    public static let size = 24
    /// The magic bytes "ISTH".
    public static let magic: [UInt8] = [0x49, 0x53, 0x54, 0x48]
    /// Protocol major version spoken here.
    public static let major: UInt8 = 1
    /// Protocol minor version spoken here.
    public static let minor: UInt8 = 1
    /// RESULT flag: frame 1 is a JSON list of failed rows, the payload starts at frame 2.
    public static let rowErrorsFlag: UInt8 = 0x02
    /// BATCH and RESULT flag (1.1): the payload is a region of the shared arena, described by
    /// a descriptor frame, instead of Arrow IPC frames (PROTOCOL.md §17).
    public static let shmFlag: UInt8 = 0x04
    /// BATCH flag (1.1, with the SHM flag): the input is a record batch message in one of the
    /// host's input files, which the worker maps itself (PROTOCOL.md §19).
    public static let fileFlag: UInt8 = 0x08
    /// Stage value meaning "no stage".
    public static let noStage: UInt16 = 0xFFFF

    public var major: UInt8 = Envelope.major
    public var minor: UInt8 = Envelope.minor
    public var kind: MessageKind
    public var flags: UInt8 = 0
    public var stage: UInt16 = Envelope.noStage
    public var attempt: UInt32 = 0
    public var sequence: UInt64 = 0

    /// An envelope of the given kind for this host's protocol version.
    public init(kind: MessageKind, stage: UInt16 = Envelope.noStage, attempt: UInt32 = 0, sequence: UInt64 = 0, flags: UInt8 = 0) {
        self.kind = kind
        self.stage = stage
        self.attempt = attempt
        self.sequence = sequence
        self.flags = flags
    }

    /// The 24 encoded bytes.
    public var encoded: [UInt8] {
        var out = Envelope.magic
        out.reserveCapacity(Envelope.size)
        out += [major, minor, kind.rawValue, flags]
        out += withUnsafeBytes(of: stage.littleEndian, Array.init)
        out += [0, 0]
        out += withUnsafeBytes(of: attempt.littleEndian, Array.init)
        out += withUnsafeBytes(of: sequence.littleEndian, Array.init)
        return out
    }

    /// Decodes and checks an envelope; a different major version is reported as
    /// `.versionMismatch` so the caller can name both versions.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(ProtocolViolation) -> Envelope {
        guard bytes.count == size else {
            throw ProtocolViolation("expected a \(size)-byte envelope but found \(bytes.count) bytes")
        }
        guard Array(bytes[0..<4]) == magic else {
            throw ProtocolViolation("expected magic ISTH (49 53 54 48) but found \(bytes[0..<4].map { hex($0) }.joined(separator: " "))")
        }
        guard bytes[4] == Envelope.major else {
            throw ProtocolViolation("expected protocol major version \(Envelope.major) but found \(bytes[4]).\(bytes[5])", versionMismatch: true)
        }
        let reserved = UInt16(bytes[10]) | UInt16(bytes[11]) << 8
        guard reserved == 0 else { throw ProtocolViolation("expected reserved bytes 10-11 to be 0 but found \(reserved)") }
        let kind = MessageKind(rawValue: bytes[6])
        guard kind.isKnown else { throw ProtocolViolation("expected a message kind 1-10 but found \(bytes[6])") }
        var e = Envelope(kind: kind,
                         stage: bytes.loadUnaligned(fromByteOffset: 8, as: UInt16.self).littleEndian,
                         attempt: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian,
                         sequence: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self).littleEndian,
                         flags: bytes[7])
        e.major = bytes[4]
        e.minor = bytes[5]
        return e
    }
}

func hex(_ b: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
}

/// A message that does not follow the protocol.
public struct ProtocolViolation: Error, Sendable, CustomStringConvertible {
    /// What was expected and what was found.
    public var message: String
    /// Whether the peer speaks another major version.
    public var versionMismatch: Bool
    public init(_ message: String, versionMismatch: Bool = false) {
        self.message = message
        self.versionMismatch = versionMismatch
    }
    public var description: String { message }
}
