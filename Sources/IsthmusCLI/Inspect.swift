import ArgumentParser

/// `isthmus inspect FILE`.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Show schema, batches and first rows of a file.")
    func run() throws { throw CLIFailure.usage("inspect is not built yet") }
}
