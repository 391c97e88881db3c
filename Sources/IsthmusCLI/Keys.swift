import ArgumentParser
import Foundation
import IsthmusZMQ

/// `isthmus keys PREFIX`: writes a CurveZMQ key pair for `run --listen`.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Write a CurveZMQ key pair: PREFIX.key (secret, mode 0600, for run --curve-key) and PREFIX.pub (for workers' --server-key).")

    @Argument(help: "Path prefix of the two files.")
    var prefix: String

    func run() throws {
        let pair = try KeyFiles.fresh()
        try KeyFiles.write(pair.secret + "\n", to: prefix + ".key", mode: 0o600)
        try KeyFiles.write(pair.public + "\n", to: prefix + ".pub", mode: 0o644)
        try writeStandardOutput(pair.public + "\n")
    }
}

/// CurveZMQ key pairs and their files: PREFIX.key holds the secret key, PREFIX.pub the public one.
enum KeyFiles {
    struct Pair {
        var `public`: String
        var secret: String
    }

    static func fresh() throws -> Pair {
        do {
            let (p, s) = try Context.curveKeyPair()
            return Pair(public: p, secret: s)
        } catch {
            throw CLIFailure.usage("cannot create a CurveZMQ key pair: \(error) (is libzmq built with CURVE support?)")
        }
    }

    /// Reads a secret key file (one 40-character Z85 key) and derives nothing else: the public
    /// key sits in the matching `.pub` file, read when present to print the join command.
    static func read(_ path: String) throws -> Pair {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CLIFailure.usage("--curve-key: cannot read '\(path)'")
        }
        let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard secret.count == 40 else {
            throw CLIFailure.usage("--curve-key \(path): expected a 40-character Z85 secret key but found \(secret.count) characters")
        }
        let pubPath = path.hasSuffix(".key") ? String(path.dropLast(4)) + ".pub" : path + ".pub"
        let pub = (try? String(contentsOfFile: pubPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "(see \(pubPath))"
        return Pair(public: pub, secret: secret)
    }

    static func write(_ text: String, to path: String, mode: Int) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode_t(mode))
        guard fd >= 0 else { throw CLIFailure.usage("cannot write '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        fchmod(fd, mode_t(mode))
        let bytes = Array(text.utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else {
            throw CLIFailure.usage("cannot write '\(path)': \(String(cString: strerror(errno)))")
        }
    }
}
