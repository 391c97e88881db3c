import Foundation
import IsthmusArrow

/// Reads every file of a directory, or every path a glob pattern matches (`data/*.arrows`,
/// `logs/2026-*.jsonl`), one after another in name order, as one stream of batches. All files
/// must have the same schema; a file that differs is an error naming it.
public final class MultiFileReader: BatchReader {
    /// The files, in the order they are read.
    public let paths: [String]
    private let format: DataFormat?
    private let options: ReadOptions
    private var index = 0
    private var current: BatchReader
    /// The schema of the first file (every file must match it).
    public let schema: Schema

    /// Opens the first file; throws `.io` when nothing matches.
    public init(paths: [String], format: DataFormat?, options: ReadOptions) throws {
        guard let first = paths.first else {
            throw ArrowError(.io, "expected at least one input file but found none")
        }
        self.paths = paths
        self.format = format
        self.options = options
        current = try FileNamingReader.open(first) { try Formats.openReader(path: first, format: format, options: options) }
        schema = current.schema
    }

    public func next() throws -> RecordBatch? {
        while true {
            if let b = try current.next() {
                guard b.schema == schema else {
                    throw ArrowError(.invalidData, "\(paths[index]): expected the schema of \(paths[0]) (\(schema.fields.map { "\($0.name): \($0.type)" }.joined(separator: ", "))) but found (\(b.schema.fields.map { "\($0.name): \($0.type)" }.joined(separator: ", ")))")
                }
                return b
            }
            index += 1
            guard index < paths.count else { return nil }
            let path = paths[index]
            current = try FileNamingReader.open(path) { try Formats.openReader(path: path, format: format, options: options) }
        }
    }

    /// The files an input names: a directory's files with a known (or the given) format, the
    /// matches of a glob pattern, or nil when `input` is a plain path.
    public static func expand(_ input: String, format: DataFormat?) throws -> [String]? {
        var isDirectory: ObjCBool = false
        if input != "-", FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory), isDirectory.boolValue {
            let names = try FileManager.default.contentsOfDirectory(atPath: input).filter { !$0.hasPrefix(".") }.sorted()
            let files = names.map { input.hasSuffix("/") ? input + $0 : input + "/" + $0 }
                .filter { format != nil || DataFormat.from(path: $0) != nil }
            guard !files.isEmpty else {
                throw ArrowError(.io, "expected data files (.arrows, .arrow, .feather, .csv, .jsonl, .ndjson) in the directory '\(input)' but found none")
            }
            return files
        }
        guard input.contains(where: { "*?[".contains($0) }) else { return nil }
        var g = glob_t()
        defer { globfree(&g) }
        guard glob(input, 0, nil, &g) == 0 else {
            throw ArrowError(.io, "expected files matching '\(input)' but found none")
        }
        return (0..<Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }.sorted()
    }
}
