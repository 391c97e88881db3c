import ArgumentParser
import Foundation
import Isthmus
import IsthmusArrow
import IsthmusBridge

/// `isthmus`: the command-line entry point.
@main
struct IsthmusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "isthmus",
        abstract: "Run Python model code as map stages over Arrow record batches.",
        discussion: """
            Exit codes: 0 success; 1 data or run failure; 2 usage or environment; 130/143 after SIGINT/SIGTERM.
            Durations: <n>[ns|us|ms|s|m] (bare number = seconds). Sizes: <n>[K|M|G|Ki|Mi|Gi] (bare number = bytes).
            """,
        version: VersionInfo.text,
        subcommands: CommandRegistry.subcommands
    )

    static func main() async {
        occupyClosedStandardDescriptors()  // before anything opens a file or a pipe
        MappedFileFaults.install(exitStatus: 1)  // an input truncated under the run: exit 1 with a message
        HeapPolicy.apply()  // per-batch buffers reuse the heap instead of fresh pages
        do {
            if CommandLine.arguments.dropFirst().first == "--version" {
                try printVersions()
                return
            }
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            Foundation.exit(CLIFailure.report(error, command: self))
        }
    }
}

/// Prints host, protocol and (when found) helper versions.
func printVersions() throws {
    var text = VersionInfo.text + "\n"
    let python = PythonStageOptions.defaultPython
    if let probe = try? PythonProbe.run(python, ["-m", "isthmus.worker", "--version"]), probe.status == 0,
       let data = probe.stdout.data(using: .utf8),
       let doc = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
        text += "helper \(doc["helper"] ?? "?") (protocol \(doc["protocol"] ?? "?")) in \(python)\n"
    } else {
        text += "helper: not found in \(python) (install it with: \(python) -m pip install ./python)\n"
    }
    try writeStandardOutput(text)
}

/// Version strings printed by `isthmus --version`.
enum VersionInfo {
    /// Host version.
    static let host = "0.1.0"
    /// Wire protocol version spoken by the host.
    static let protocolVersion = "1.1"
    /// The `--version` text; the helper's version is added at run time by `VersionCommand`.
    static var text: String { "isthmus \(host) (protocol \(protocolVersion))" }
}
