import ArgumentParser
import Foundation
import Isthmus

/// `isthmus udfs FILE.py`: the UDFs a module registers, with their declared schemas.
struct UdfsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "udfs", abstract: "List the Python functions a module offers as stages.")

    @Argument(help: "A Python file (FILE.py) or module name.")
    var module: String
    @Option(name: .long, help: "Python interpreter (default: $ISTHMUS_PYTHON, else python3 on PATH).")
    var python: String?
    @Flag(name: .long, help: "Print the helper's JSON instead of a table.")
    var json = false

    func run() throws {
        if module.hasSuffix(".py") && !FileManager.default.fileExists(atPath: module) {
            throw CLIFailure.usage("expected a Python file at '\(module)' but found none")
        }
        let interpreter = python ?? PythonStageOptions.defaultPython
        let result = try PythonProbe.run(interpreter, ["-m", "isthmus.worker", "--list", module])
        guard result.status == 0 else {
            let line = result.stderr.split(separator: "\n").last.map(String.init) ?? "exit status \(result.status)"
            if line.contains("No module named 'isthmus'") {
                throw CLIFailure.usage("the Python at '\(interpreter)' cannot import the isthmus helper; install it with: \(interpreter) -m pip install ./python")
            }
            throw CLIFailure.usage(line.hasPrefix("error: ") ? String(line.dropFirst(7)) : line)
        }
        if json {
            try writeStandardOutput(result.stdout.hasSuffix("\n") ? result.stdout : result.stdout + "\n")
            return
        }
        guard let data = result.stdout.data(using: .utf8),
              let parsed = try? JSONSerialization.jsonObject(with: data) else {
            throw CLIFailure.data("expected JSON from the helper's --list but found: \(result.stdout.prefix(120))")
        }
        let entries: [[String: Any]] = (parsed as? [[String: Any]]) ?? ((parsed as? [String: Any])?["udfs"] as? [[String: Any]]) ?? []
        if entries.isEmpty {
            try writeStandardOutput("\(module): no UDFs found\n")
            return
        }
        var listing = ""
        for e in entries {
            let name = e["name"] as? String ?? "?"
            let kind = e["kind"] as? String ?? "function"
            let input = e["input"] as? String ?? "arrow"
            var line = "\(name)  (\(kind), input \(input))"
            if let schema = e["schema"] as? [[String: Any]] {
                line += "  -> " + schema.map { "\($0["name"] as? String ?? "?"): \($0["type"] as? String ?? "?")" }.joined(separator: ", ")
            } else {
                line += "  -> schema not declared"
            }
            listing += line + "\n"
        }
        try writeStandardOutput(listing)
    }
}

/// Runs a short Python command and collects its output (for `udfs` and `--version`).
enum PythonProbe {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ python: String, _ arguments: [String]) throws -> Result {
        guard FileManager.default.isExecutableFile(atPath: python) || !python.contains("/") else {
            throw CLIFailure.usage("expected an executable Python interpreter but found nothing runnable at '\(python)'; pass --python PATH or set ISTHMUS_PYTHON")
        }
        let p = Process()
        if python.contains("/") {
            p.executableURL = URL(fileURLWithPath: python)
            p.arguments = arguments
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = [python] + arguments
        }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        do { try p.run() } catch {
            throw CLIFailure.usage("cannot start '\(python)': \(error.localizedDescription)")
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }
}
