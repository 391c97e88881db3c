import ArgumentParser

/// The subcommands of `isthmus`, in the order `--help` lists them.
enum CommandRegistry {
    static let subcommands: [any ParsableCommand.Type] = [
        ConvertCommand.self, InspectCommand.self,
    ]
}
