import Foundation
import IsthmusArrow
import IsthmusCompression

/// Shared option handling of the commands that read and write files.
enum CLIFormats {
    /// The format named by `--from`/`--to`, or nil when not given.
    static func format(_ name: String?, flag: String) throws -> DataFormat? {
        guard let name else { return nil }
        guard let f = DataFormat(name: name) else {
            throw CLIFailure.usage("\(flag): expected arrows, arrow, csv or jsonl but found '\(name)'")
        }
        return f
    }

    /// Reading options from the text-format flags, with the system body codecs.
    static func readOptions(batchRows: Int?, delimiter: String?, noHeader: Bool, schema: String?,
                            inferRows: Int?, ignoreUnknownKeys: Bool, format: DataFormat?) throws -> ReadOptions {
        var o = RunFormats.readOptions()
        if let batchRows {
            guard batchRows > 0 else { throw CLIFailure.usage("--batch-rows: expected at least 1 but found \(batchRows)") }
            o.batchRows = batchRows
        }
        if let delimiter { o.delimiter = try parseDelimiter(delimiter) }
        o.hasHeader = !noHeader
        if let inferRows {
            guard inferRows > 0 else { throw CLIFailure.usage("--infer-rows: expected at least 1 but found \(inferRows)") }
            o.inferenceRows = inferRows
        }
        o.ignoreUnknownKeys = ignoreUnknownKeys
        if let schema {
            let fields: [Field]
            do { fields = try TypeSpec.parseSchema(schema) } catch {
                throw CLIFailure.usage("--schema: \(error)")
            }
            if noHeader && format == .csv { o.schema = Schema(fields) } else { o.columnTypes = fields }
        }
        return o
    }

    /// Writing options for `--compression`.
    static func writeOptions(compression: String) throws -> WriteOptions {
        try RunFormats.writeOptions(compression: compression)
    }

    /// One delimiter byte from `--delimiter` (`,`, `;`, `\t`, `tab`, `|`).
    static func parseDelimiter(_ text: String) throws -> UInt8 {
        switch text {
        case "\\t", "tab", "\t": return UInt8(ascii: "\t")
        default:
            let bytes = Array(text.utf8)
            guard bytes.count == 1, bytes[0] != UInt8(ascii: "\""), bytes[0] != 10, bytes[0] != 13 else {
                throw CLIFailure.usage("--delimiter: expected one ASCII character other than a quote or newline but found '\(text)'")
            }
            return bytes[0]
        }
    }

    /// An error from reading `path`, with the path named (I/O problems exit 2, bad content 1).
    static func inInput(_ error: Error, path: String) -> Error {
        guard let e = error as? ArrowError else { return error }
        let name = displayName(path)
        if e.message.contains(name) || e.message.contains(path) { return e }
        return ArrowError(e.code, "\(name): \(e.message)", offset: e.offset)
    }

    /// The path as shown in messages (`-` is stdin).
    static func displayName(_ path: String) -> String { path == "-" ? "stdin" : path }
}
