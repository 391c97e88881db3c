import ArgumentParser
import IsthmusArrow
import IsthmusCompression

/// `isthmus convert INPUT OUTPUT`: any supported format to any other, atomically.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert between Arrow stream/file, CSV and JSON Lines.",
        discussion: """
            Formats come from the extensions (.arrows stream, .arrow/.feather file, .csv, .jsonl/.ndjson) \
            unless --from/--to say otherwise; - is stdin (format recognised from its first bytes) or \
            stdout (Arrow stream unless --to). Arrow to Arrow keeps schema, metadata, dictionaries and \
            values exactly. The output is written under a temporary name and renamed at the end: a failed \
            conversion leaves no output and an existing OUTPUT is replaced only on success.
            """)

    @Argument(help: "Input file, or - for stdin.")
    var input: String

    @Argument(help: "Output file, or - for stdout.")
    var output: String

    @Option(name: .long, help: "Input format: arrows, arrow, csv, jsonl.")
    var from: String?

    @Option(name: .long, help: "Output format: arrows, arrow, csv, jsonl.")
    var to: String?

    @Option(name: .long, help: "Buffer compression of Arrow outputs: none, lz4, zstd.")
    var compression: String = "none"

    @Option(name: .customLong("batch-rows"), help: "Rows per batch read from CSV/JSON Lines (default 65536); larger Arrow batches are cut.")
    var batchRows: Int?

    @Option(name: .long, help: "CSV field delimiter, one character or 'tab' (default ',').")
    var delimiter: String?

    @Flag(name: .customLong("no-header"), help: "The CSV input has no header row (columns f0, f1, ... or the --schema names); the CSV output gets none.")
    var noHeader = false

    @Option(name: .long, help: "Column types, e.g. 'a:int64,b:string,t:timestamp[ms, tz=UTC]': overrides inference for the named columns (with --no-header: the whole CSV schema).")
    var schema: String?

    @Option(name: .customLong("infer-rows"), help: "Rows of CSV/JSON Lines looked at to infer types (default 1000).")
    var inferRows: Int?

    @Flag(name: .customLong("ignore-unknown-keys"), help: "JSON Lines: skip keys not seen while inferring the schema instead of failing.")
    var ignoreUnknownKeys = false

    func run() throws {
        let inputFormat = try FormatFlags.format(from, flag: "--from")
        let outputFormat = try FormatFlags.format(to, flag: "--to")
        // Fail on names we cannot place before reading or creating anything.
        _ = try Formats.resolve(path: input, format: inputFormat, output: false)
        _ = try Formats.resolve(path: output, format: outputFormat, output: true)
        let readOptions = try FormatFlags.readOptions(batchRows: batchRows, delimiter: delimiter, noHeader: noHeader, schema: schema,
                                                     inferRows: inferRows, ignoreUnknownKeys: ignoreUnknownKeys, format: inputFormat ?? DataFormat.from(path: input))
        var writeOptions = try FormatFlags.writeOptions(compression: compression)
        if let delimiter { writeOptions.delimiter = try FormatFlags.parseDelimiter(delimiter) }
        writeOptions.header = !noHeader

        let reader: BatchReader
        do { reader = try Formats.openReader(path: input, format: inputFormat, options: readOptions) } catch {
            throw FormatFlags.inInput(error, path: input)
        }
        let (writer, file) = try Formats.openWriter(path: output, format: outputFormat, schema: reader.schema, options: writeOptions)
        var rows = 0
        var batches = 0
        do {
            while true {
                let next: RecordBatch?
                do { next = try reader.next() } catch { throw FormatFlags.inInput(error, path: input) }
                guard let batch = next else { break }
                try writer.write(batch)
                rows += batch.length
                batches += 1
            }
            try writer.finish()
            try file.commit()
        } catch {
            file.abandon()
            throw error
        }
        if output != "-" {
            note("convert: \(rows) row\(rows == 1 ? "" : "s") in \(batches) batch\(batches == 1 ? "" : "es") written to \(output)")
        }
    }
}

/// Turns the text-format flags shared by `convert` and `inspect` into `ReadOptions` /
/// `WriteOptions`, with usage failures (exit 2) for bad values.
enum FormatFlags {
    /// Read options with the system IPC codecs. `schema` declares column types
    /// (`a:int64,b:string`): with `noHeader` it is the whole CSV schema (names and types in
    /// order), otherwise it overrides the types of the named columns.
    static func readOptions(batchRows: Int?, delimiter: String?, noHeader: Bool, schema: String?,
                            inferRows: Int?, ignoreUnknownKeys: Bool, format: DataFormat?) throws -> ReadOptions {
        var o = ReadOptions()
        o.codecs = BodyCodecs.system
        if let batchRows {
            guard batchRows > 0 else { throw CLIFailure.usage("--batch-rows: expected a positive number of rows but found \(batchRows)") }
            o.batchRows = batchRows
        }
        if let inferRows {
            guard inferRows > 0 else { throw CLIFailure.usage("--infer-rows: expected a positive number of rows but found \(inferRows)") }
            o.inferenceRows = inferRows
        }
        if let delimiter { o.delimiter = try parseDelimiter(delimiter) }
        o.hasHeader = !noHeader
        o.ignoreUnknownKeys = ignoreUnknownKeys
        if let schema {
            let fields: [Field]
            do { fields = try TypeSpec.parseSchema(schema) } catch let e as ArrowError {
                throw CLIFailure.usage("--schema: \(e.message)")
            }
            if noHeader && format != .jsonl { o.schema = Schema(fields) } else { o.columnTypes = fields }
        }
        return o
    }

    /// Write options for `--compression none|lz4|zstd`.
    static func writeOptions(compression: String) throws -> WriteOptions {
        var o = WriteOptions()
        if compression.lowercased() != "none" {
            guard let codec = BodyCodecs.named(compression) else {
                throw CLIFailure.usage("--compression: expected none, lz4 or zstd but found '\(compression)'")
            }
            o.compression = codec
        }
        return o
    }

    /// A `--from` / `--to` value.
    static func format(_ name: String?, flag: String) throws -> DataFormat? {
        guard let name else { return nil }
        guard let f = DataFormat(name: name) else {
            throw CLIFailure.usage("\(flag): expected arrows, arrow, csv or jsonl but found '\(name)'")
        }
        return f
    }

    /// One delimiter byte: a character, or `tab` / `\t`.
    static func parseDelimiter(_ text: String) throws -> UInt8 {
        switch text {
        case "\\t", "tab", "\t": return 9
        default:
            let bytes = Array(text.utf8)
            guard bytes.count == 1, bytes[0] != 0x22, bytes[0] != 0x0a, bytes[0] != 0x0d else {
                throw CLIFailure.usage("--delimiter: expected one ASCII character other than a quote or a line end (or 'tab') but found '\(text)'")
            }
            return bytes[0]
        }
    }

    /// `path` as messages name it.
    static func displayName(_ path: String) -> String { path == "-" ? "stdin" : path }

    /// A data error from reading `path`, with the path in front of the message.
    static func inInput(_ error: Error, path: String) -> Error {
        (error as? ArrowError)?.reading(displayName(path)) ?? error
    }
}
