import ArgumentParser
import Foundation
import IsthmusArrow

/// `isthmus inspect FILE`: schema, batch and row counts, sizes and the first rows, on stdout.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show schema, batches and first rows of a file.",
        discussion: """
            Prints the schema (with metadata), the number of batches and rows, the input size and the \
            bytes its buffers take in memory, then the first rows as a table. FILE may be - for stdin.
            """)

    @Argument(help: "File to inspect, or - for stdin.")
    var file: String

    @Option(name: .long, help: "Rows shown in the table.")
    var rows: Int = 10

    @Option(name: .long, help: "Input format: arrows, arrow, csv, jsonl.")
    var from: String?

    @Option(name: .long, help: "CSV field delimiter, one character or 'tab' (default ',').")
    var delimiter: String?

    @Flag(name: .customLong("no-header"), help: "The CSV input has no header row.")
    var noHeader = false

    @Option(name: .long, help: "Column types, e.g. 'a:int64,b:string' (see convert --help).")
    var schema: String?

    @Option(name: .customLong("max-width"), help: "Widest table cell in characters.")
    var maxWidth: Int = 40

    func validate() throws {
        guard rows >= 0 else { throw CLIFailure.usage("--rows: expected zero or more rows but found \(rows)") }
        guard maxWidth >= 4 else { throw CLIFailure.usage("--max-width: expected at least 4 characters but found \(maxWidth)") }
    }

    func run() throws {
        let format = try FormatFlags.format(from, flag: "--from")
        let resolved = try Formats.resolve(path: file, format: format, output: false)
        let options = try FormatFlags.readOptions(batchRows: nil, delimiter: delimiter, noHeader: noHeader, schema: schema,
                                                 inferRows: nil, ignoreUnknownKeys: false, format: resolved)
        let reader: BatchReader
        var counter: CountingSource?
        var fileSize: Int?
        do {
            if file == "-" {
                let c = CountingSource(try InputFile(path: "-"))
                counter = c
                reader = try Formats.openReader(source: c, format: resolved, options: options)
            } else {
                let attributes = try? FileManager.default.attributesOfItem(atPath: file)
                fileSize = (attributes?[.size] as? NSNumber)?.intValue
                reader = try Formats.openReader(path: file, format: resolved, options: options)
            }
        } catch {
            throw FormatFlags.inInput(error, path: file)
        }

        var batches = 0
        var totalRows = 0
        var memory = 0
        var shown: [RecordBatch] = []
        var shownRows = 0
        do {
            while let b = try reader.next() {
                batches += 1
                totalRows += b.length
                memory += b.byteSize
                if shownRows < rows {
                    let take = min(rows - shownRows, b.length)
                    shown.append(take == b.length ? b : b.slice(0, take))
                    shownRows += take
                }
            }
        } catch {
            throw FormatFlags.inInput(error, path: file)
        }
        if let counter { fileSize = counter.count }

        var out = ""
        out += "file: \(FormatFlags.displayName(file))\n"
        out += "format: \(Self.formatName(resolved ?? Self.guessFormat(reader)))\n"
        if let fileSize { out += "size: \(Self.bytes(fileSize))\n" }
        out += "schema:\n"
        let schemaText = reader.schema.fields.isEmpty && reader.schema.metadata.isEmpty ? "(no columns)" : reader.schema.description
        out += schemaText.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n") + "\n"
        out += "batches: \(batches)\n"
        out += "rows: \(totalRows)\n"
        out += "memory: \(Self.bytes(memory)) in buffers\n"
        if rows > 0 {
            var o = Pretty.Options()
            o.maxRows = rows
            o.maxCellWidth = maxWidth
            out += "\nfirst \(min(rows, totalRows)) row\(min(rows, totalRows) == 1 ? "" : "s"):\n"
            out += Pretty.table(schema: reader.schema, batches: shown, totalRows: totalRows, options: o) + "\n"
        }
        try writeStandardOutput(out)
    }

    static func formatName(_ f: DataFormat) -> String {
        switch f {
        case .arrows: "Arrow IPC stream"
        case .arrow: "Arrow IPC file"
        case .csv: "CSV"
        case .jsonl: "JSON Lines"
        }
    }

    static func guessFormat(_ reader: BatchReader) -> DataFormat {
        switch reader {
        case is CSVReader: .csv
        case is JSONLinesReader: .jsonl
        default: .arrows
        }
    }

    static func bytes(_ n: Int) -> String {
        if n < 1024 { return "\(n) bytes" }
        let units = ["KiB", "MiB", "GiB", "TiB"]
        var v = Double(n) / 1024
        var u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return String(format: "%.1f %@ (%d bytes)", v, units[u], n)
    }
}

/// Counts the bytes read through it (the size of stdin).
final class CountingSource: PollableByteSource {
    private let inner: InputFile
    private(set) var count = 0

    init(_ inner: InputFile) { self.inner = inner }

    var isLive: Bool { inner.isLive }

    func isReadable(within timeout: Double) -> Bool { inner.isReadable(within: timeout) }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = try inner.read(into: buffer)
        count += n
        return n
    }
}
