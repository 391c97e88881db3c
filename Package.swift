// swift-tools-version: 6.0
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "Isthmus",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "isthmus", targets: ["IsthmusCLI"]),
        .library(name: "Isthmus", targets: ["Isthmus"]),
        .library(name: "IsthmusArrow", targets: ["IsthmusArrow"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    ],
    targets: [
        // C shims: each system library is reached through one target, one module map.
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CMalloc"),  // glibc's <malloc.h>: mallopt, for IsthmusBridge's HeapPolicy

        // Pure Swift: columnar core, FlatBuffers, Arrow IPC, CSV / JSON Lines. Imports no C.
        .target(name: "IsthmusArrow", swiftSettings: strict),
        // LZ4_FRAME and ZSTD body codecs for Arrow IPC, the only place that calls liblz4/libzstd.
        .target(name: "IsthmusCompression", dependencies: ["IsthmusArrow", "CLZ4", "CZstd"], swiftSettings: strict),
        // The only place that calls zmq_*.
        .target(name: "IsthmusZMQ", dependencies: ["CZeroMQ"], swiftSettings: strict),
        .target(name: "IsthmusBridge", dependencies: ["IsthmusArrow", "IsthmusCompression", "IsthmusZMQ", "CMalloc"], swiftSettings: strict),
        .target(name: "Isthmus", dependencies: [
            "IsthmusBridge", "IsthmusArrow",
            .product(name: "Histogram", package: "hdrhistogram-swift"),
        ], swiftSettings: strict),
        .executableTarget(name: "IsthmusCLI", dependencies: [
            "Isthmus", "IsthmusCompression", "IsthmusZMQ",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),

        .testTarget(name: "IsthmusArrowTests", dependencies: ["IsthmusArrow", "IsthmusCompression"], swiftSettings: strict),
        .testTarget(name: "IsthmusZMQTests", dependencies: ["IsthmusZMQ"], swiftSettings: strict),
        .testTarget(name: "IsthmusBridgeTests", dependencies: ["IsthmusBridge"], swiftSettings: strict),
        .testTarget(name: "IsthmusTests", dependencies: ["Isthmus"], swiftSettings: strict),
        .testTarget(name: "IsthmusCLITests", dependencies: ["IsthmusArrow"], swiftSettings: strict),
    ]
)
