import ArgumentParser
import Foundation
import IsthmusArrow

/// A failure the CLI reports as one `error:` line (plus optional detail lines such as a
/// Python traceback) and an exit code from DESIGN.md.
struct CLIFailure: Error, CustomStringConvertible {
    /// Exit status.
    var code: Int32
    /// One line: what was expected, what was found, where.
    var message: String
    /// Further lines printed after the message (a traceback), or empty.
    var detail: String = ""

    /// Data or run failure (exit 1).
    static func data(_ message: String, detail: String = "") -> CLIFailure { CLIFailure(code: 1, message: message, detail: detail) }
    /// Usage or environment failure (exit 2).
    static func usage(_ message: String) -> CLIFailure { CLIFailure(code: 2, message: message) }

    var description: String { message }

    /// Prints `error` to stderr in the house style and returns the exit status to use.
    static func report(_ error: Error, command: any ParsableCommand.Type) -> Int32 {
        switch error {
        case let failure as CLIFailure:
            printError(failure.message, detail: failure.detail)
            return failure.code
        case let arrow as ArrowError:
            printError(arrow.description)
            return arrow.code == .io || arrow.code == .invalidArgument ? 2 : 1
        case let exit as ExitCode:
            return exit.rawValue
        default:
            let code = command.exitCode(for: error)
            if code == .success {
                try? writeStandardOutput(command.fullMessage(for: error) + "\n")
                return 0
            }
            let message = command.fullMessage(for: error)
            let lines = message.split(separator: "\n", omittingEmptySubsequences: true)
            var first = lines.first.map(String.init) ?? "\(error)"
            if first.hasPrefix("Error: ") { first = String(first.dropFirst(7)) }
            first = negativeValueMessage(first, arguments: Array(CommandLine.arguments.dropFirst())) ?? first
            // One line, as every error: where to read more instead of the usage synopsis.
            let usage = lines.first { $0.hasPrefix("Usage: ") }?.dropFirst(7).split(separator: " ")
            let path = usage.map { words in words.prefix { !$0.hasPrefix("<") && !$0.hasPrefix("[") && !$0.hasPrefix("-") } }
            let help = (path?.isEmpty ?? true) ? "isthmus --help" : path!.joined(separator: " ") + " --help"
            printError("\(first) (see '\(help)')")
            return 2
        }
    }

    /// The argument parser reads `--linger -1` or `--output -1.arrows` as a flag without its
    /// value ("Missing value for '--linger <linger>'"); say what was found instead: a negative
    /// number, or a value that reads as an option. Nil when that is not the case (`--linger
    /// --workers 2` really lacks a value).
    static func negativeValueMessage(_ message: String, arguments: [String]) -> String? {
        guard message.hasPrefix("Missing value for '"),
              let flag = message.dropFirst("Missing value for '".count).split(separator: " ").first.map({ String($0.filter { $0 != "'" }) }),
              let at = arguments.firstIndex(of: flag), at + 1 < arguments.count else { return nil }
        let value = arguments[at + 1]
        // A negative number, a duration or a size ("-1", "-0.5", "-2s", "-8Mi"), or another
        // value that begins with one dash ("-1.arrows").
        guard value.hasPrefix("-"), !value.hasPrefix("--"), value.count > 1 else { return nil }
        let number = value.dropFirst().prefix { $0.isNumber || $0 == "." }
        let unit = value.dropFirst(1 + number.count)
        guard !number.isEmpty, ["", "ns", "us", "ms", "s", "m", "K", "M", "G", "Ki", "Mi", "Gi"].contains(String(unit)) else {
            return "\(flag): expected a value but found '\(value)', which reads as an option; write \(flag)=\(value)"
        }
        return "\(flag): expected a value of 0 or more, found '\(value)'"
    }

    /// Writes `error: message` (and detail lines) to stderr.
    static func printError(_ message: String, detail: String = "") {
        var text = "error: " + message.replacingOccurrences(of: "\n", with: " ") + "\n"
        if !detail.isEmpty { text += detail.hasSuffix("\n") ? detail : detail + "\n" }
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// Puts a placeholder on each closed standard descriptor (0, 1, 2) at start: a directory
/// opened read-only, so writing to it fails with EBADF ("cannot write '-': Bad file
/// descriptor") and reading with EISDIR, as if it were still closed. Without it the next file or
/// pipe the process opens takes the number, and a child started with a pipe for its stdout
/// finds none (the helper probe saw `sys.stdout` None).
func occupyClosedStandardDescriptors() {
    for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
        let placeholder = open("/", O_RDONLY | O_DIRECTORY)
        if placeholder >= 0 && placeholder != fd {
            dup2(placeholder, fd)
            close(placeholder)
        }
    }
}

/// Writes `text` to stdout, or throws the house-style error when stdout cannot take it (a full
/// disk, a closed pipe with SIGPIPE ignored): `FileHandle.write(_:)` would trap instead.
func writeStandardOutput(_ text: String) throws {
    do {
        try FileHandle.standardOutput.write(contentsOf: Data(text.utf8))
    } catch {
        // Foundation wraps the errno (ENOSPC, EPIPE, EBADF) in a Cocoa error.
        let ns = error as NSError
        let posix = ns.domain == NSPOSIXErrorDomain ? ns : ns.userInfo[NSUnderlyingErrorKey] as? NSError
        let reason = posix.map { String(cString: strerror(Int32($0.code))) } ?? ns.localizedDescription
        throw CLIFailure.usage("cannot write '-': \(reason)")
    }
}

/// Writes a line to stderr (logs, progress, summaries: stdout is reserved for data).
func note(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
