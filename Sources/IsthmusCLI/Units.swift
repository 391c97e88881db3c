/// Parsers for the CLI's duration and size arguments.
enum Units {
    /// Parses `<n>[ns|us|ms|s|m]` (bare number = seconds) into seconds.
    static func duration(_ text: String) -> Double? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let suffixes: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60)]
        for (suffix, scale) in suffixes where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count)), v >= 0, v.isFinite else { return nil }
            return v * scale
        }
        guard let v = Double(t), v >= 0, v.isFinite else { return nil }
        return v
    }

    /// Parses `<n>[K|M|G|Ki|Mi|Gi]` (bare number = bytes) into bytes.
    static func size(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let suffixes: [(String, Double)] = [("Ki", 1024), ("Mi", 1024 * 1024), ("Gi", 1024 * 1024 * 1024),
                                            ("K", 1e3), ("M", 1e6), ("G", 1e9), ("B", 1)]
        for (suffix, scale) in suffixes where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count)), v >= 0, v.isFinite else { return nil }
            return Int(v * scale)
        }
        return Int(t).flatMap { $0 >= 0 ? $0 : nil }
    }
}

import Foundation
