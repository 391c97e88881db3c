import ArgumentParser

/// The subcommands of `isthmus`, in the order `--help` lists them.
enum CommandRegistry {
    static let subcommands: [any ParsableCommand.Type] = [
        RunCommand.self, ConvertCommand.self, InspectCommand.self, UdfsCommand.self, DemoCommand.self, BenchCommand.self, KeysCommand.self,
    ]
}
