import ArgumentParser

/// `isthmus convert INPUT OUTPUT`.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "convert", abstract: "Convert between Arrow stream/file, CSV and JSON Lines.")
    func run() throws { throw CLIFailure.usage("convert is not built yet") }
}
