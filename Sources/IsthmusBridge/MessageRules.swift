/// Which side may send each kind, and how many frames (envelope included) each needs
/// (PROTOCOL.md §Grammar). Pure checks, shared by the host and the tests.
public enum MessageRules {
    /// The sender of a message.
    public enum Side: Sendable { case host, worker }

    static let workerKinds: Set<MessageKind> = [.hello, .ready, .result, .error, .heartbeat, .bye, .release]
    static let hostKinds: Set<MessageKind> = [.open, .batch, .heartbeat, .close]

    /// Fewest frames a message of `kind` has.
    public static func minimumFrames(_ kind: MessageKind, from side: Side) -> Int {
        switch kind {
        case .open: 3
        case .hello, .ready, .batch, .result, .error, .close, .release: 2
        case .heartbeat: side == .worker ? 1 : 1
        default: 1
        }
    }

    /// Checks direction and frame count; throws a violation that names expected and found.
    public static func check(_ envelope: Envelope, frames: Int, from side: Side) throws(ProtocolViolation) {
        let allowed = side == .worker ? workerKinds : hostKinds
        guard allowed.contains(envelope.kind) else {
            let names = (side == .worker ? ["HELLO", "READY", "RESULT", "ERROR", "HEARTBEAT", "BYE", "RELEASE"] : ["OPEN", "BATCH", "HEARTBEAT", "CLOSE"]).joined(separator: ", ")
            throw ProtocolViolation("expected a \(side) message (\(names)) but found \(envelope.kind)")
        }
        let needed = minimumFrames(envelope.kind, from: side)
        guard frames >= needed else {
            throw ProtocolViolation("expected at least \(needed) frames in a \(envelope.kind) message from the \(side) but found \(frames)")
        }
    }
}
