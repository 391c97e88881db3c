import Foundation
import IsthmusArrow
import IsthmusZMQ
#if canImport(Glibc)
import Glibc
#endif

/// The I/O side of a `WorkerPool`: owns the ROUTER socket, launches and supervises the
/// worker processes, speaks the protocol, enforces credits, deadlines and retries.
///
/// Who runs it: whoever holds `baton`. Normally that is the pool's I/O thread (`run()`), but a
/// caller waiting for the answer to its own request may take the baton and turn the loop
/// itself (`drive(until:)`), so that a one-row request goes caller → socket → worker → socket
/// → caller without two more thread wake-ups through the I/O thread. The I/O thread waits for
/// work *without* the baton, by polling the socket's file descriptor (`ZMQ_FD`) and the
/// wake-up pipe with poll(2), so a caller never waits behind a sleeping I/O thread.
///
/// `ZMQ_FD` is edge-triggered (zmq_getsockopt(3)): it becomes readable when the socket has
/// commands to process, not while messages wait. So every holder of the baton keeps this rule:
/// before giving the baton back, it has seen `ZMQ_EVENTS` without POLLIN after its last send or
/// receive (`turn()` ends that way). Any message that arrives later makes the descriptor
/// readable again, and whoever is polling it wakes up.
final class PoolIO: @unchecked Sendable {
    // @unchecked: all state is used only by the holder of `baton` (the creator until `run()`
    // starts, then the I/O thread or a driving caller).

    /// Per-slot supervision state.
    final class Slot {
        enum Phase: Equatable { case starting, opening, ready, dying, stopped }
        let index: Int
        var generation = 0
        var process: WorkerProcess?
        var identity: [UInt8]?
        var phase: Phase = .starting
        var launchedAt = 0.0
        var lastHeard = 0.0
        var lastHeartbeatSent = 0.0
        var lastResultAt = 0.0
        var inFlight: [PendingBatch] = []
        /// Whether the worker answered CLOSE with BYE.
        var saidBye = false
        /// Restarts since this slot last finished a batch (bounds restart storms).
        var restartsWithoutProgress = 0
        /// Whether this worker mapped the shared arena (READY said so).
        var shm = false
        /// Whether this worker maps input files itself (HELLO announced `input_file`, and it has the arena).
        var inputFiles = false
        /// Whether a worker of this slot refused a batch as a range of the input file: its
        /// successors get copies too, and the refusal is logged once.
        var inputFilesRefused = false
        /// Input regions lent to this worker and not yet given back with RELEASE, by offset.
        var held: [Int: ArenaLease] = [:]
        /// The slot's doorbells (local pools with an arena; kept across restarts).
        var doorbell: Doorbell?
        /// Whether this worker's OPEN offered them, and whether it opened them (READY said so).
        var doorbellOffered = false
        var doorbellOpen = false
        /// Whether a batch sent through the doorbell awaits its answer.
        var doorbellBusy: Bool { inFlight.contains { $0.doorbellSlot != nil } }
        /// A request mailbox no batch in flight occupies, if any: a mailbox is the batch's
        /// until it is answered, by either path, or the worker is gone.
        var freeDoorbellSlot: Int? {
            guard doorbellOpen, let bell = doorbell else { return nil }
            var used = [Bool](repeating: false, count: bell.slots)
            for b in inFlight { if let j = b.doorbellSlot { used[j] = true } }
            return used.firstIndex(of: false)
        }
        init(index: Int) { self.index = index }
    }

    let configuration: PoolConfiguration
    let shared: PoolShared
    let wakeFD: Int32
    let wakeWrite: Int32
    let schemaMessage: Buffer
    let context: Context
    let router: Socket
    let endpoint: String
    let directory: String?
    /// Whether workers join over tcp:// instead of being launched here.
    var remote: Bool { configuration.listen != nil }
    let token: String
    /// The shared arena, for local workers that can map it (PROTOCOL.md §17).
    let arena: SharedArena?
    /// Result bytes per input byte seen lately: sizes the result regions offered with BATCH.
    var resultRatio = 1.0
    var slots: [Slot] = []
    var queue: [PendingBatch] = []       // waiting to be sent, sorted by sequence
    var declaredOutputSchema: Schema?
    var outputSchema: Schema?
    var onReady: (@Sendable () -> Void)?
    private var readySignalled = false
    private var stopping = false
    /// Held by whoever turns the loop (see the type's comment).
    let baton = NSLock()
    /// CPUs this process may use (for `SpinPolicy`).
    private let cpus = SpinPolicy.allowedCPUs()
    /// Starts every local worker process, from one long-lived thread (see `SpawnThread`);
    /// created by `prepare()` for local workers only.
    private var spawner: SpawnThread?
    /// The ROUTER's `ZMQ_FD`, polled with poll(2) by whoever waits for the socket.
    private var socketFD: Int32 = -1

    init(configuration: PoolConfiguration, shared: PoolShared, wakeFD: Int32, wakeWrite: Int32, schemaMessage: Buffer,
         arena: SharedArena? = nil) throws {
        self.configuration = configuration
        self.arena = arena
        self.shared = shared
        self.wakeFD = wakeFD
        self.wakeWrite = wakeWrite
        self.schemaMessage = schemaMessage
        do {
            context = try Context(ioThreads: 1)
            router = try context.socket(.router)
            try router.set(.routerMandatory, Int32(1))
            try router.set(.sendHighWaterMark, Int32(0))
            try router.set(.receiveHighWaterMark, Int32(0))
            // A frame beyond every sane size (at least 1 GiB, or the result limit) is refused by libzmq
            // before it is buffered; libzmq then drops the peer silently, so results between
            // --max-result-bytes and this cap are received and refused by our own check instead,
            // with a clear error.
            try router.set(.maxMessageSize, Int64(Swift.max(configuration.maxResultBytes, 1 << 30)) + (1 << 20))
            if let listen = configuration.listen {
                if let secret = configuration.curveSecretKey {
                    try router.set(.curveServer, Int32(1))
                    try router.set(.curveSecretKey, secret)
                } else if !configuration.insecure {
                    throw BridgeError(.startup, "--listen \(listen): expected a CurveZMQ key pair (plaintext tcp needs --insecure) but found none")
                }
                directory = nil
                try router.bind(listen)
                endpoint = router.lastEndpoint
            } else {
                let dir = try RunDirectory.create()
                directory = dir
                endpoint = "ipc://\(dir)/isthmus.sock"
                try router.bind(endpoint)
            }
        } catch let error as ZMQError {
            throw BridgeError(.startup, "cannot open the worker socket\(configuration.listen.map { " at \($0)" } ?? ""): \(error)")
        }
        socketFD = router.fileDescriptor
        token = RunDirectory.randomToken()
        if let arena { shared.locked { shared.stats.arenaBytes = arena.size } }
    }

    /// Launches every worker (before the I/O thread starts).
    func prepare() throws {
        slots = (0..<configuration.workers).map { Slot(index: $0) }
        if remote {
            for slot in slots { slot.launchedAt = now() }
            configuration.log("isthmus: waiting up to \(Durations.text(configuration.startupTimeout)) for \(slots.count) worker\(slots.count == 1 ? "" : "s") on \(endpoint)")
            return
        }
        try checkInterpreter()
        makeDoorbells()
        spawner = SpawnThread()
        for slot in slots { try launch(slot) }
    }

    /// Every local worker's doorbells (§18), before any batch takes a region of the arena: one
    /// mailbox pair per credit, at most `Doorbell.maxSlots`, and all of them together at most
    /// an eighth of the arena, so that the mailboxes never crowd out the batches (a 1 MiB
    /// arena has one pair for a single worker, none for two or more). Credits beyond the mailboxes use the socket.
    private func makeDoorbells() {
        guard let arena, let directory else { return }
        let pair = 2 * Doorbell.mailboxBytes
        let fit = arena.size / 8 / (pair * Swift.max(1, slots.count))
        let perWorker = Swift.min(configuration.credits, Doorbell.maxSlots, fit)
        guard perWorker > 0 else {
            configuration.log("isthmus: no doorbells: the \(arena.size)-byte arena has no room for them (they may take an eighth of it, \(pair) bytes per worker and credit); batches go through the socket")
            return
        }
        for s in slots {
            do {
                s.doorbell = try Doorbell(directory: directory, slot: s.index, slots: perWorker, arena: arena)
            } catch {
                configuration.log("isthmus: no doorbell for worker \(s.index) (\(error)); its batches go through the socket")
            }
        }
    }

    /// Cleans up when `prepare()` failed and the I/O thread will never run.
    func abortBeforeStart() {
        for slot in slots { slot.process?.kill(reason: "startup aborted") }
        spawner?.stop()
        router.close()
        if let directory { RunDirectory.remove(directory) }
    }

    private func checkInterpreter() throws {
        let python = configuration.python
        guard FileManager.default.isExecutableFile(atPath: Interpreter.resolve(python)) else {
            throw BridgeError(.startup, "expected an executable Python interpreter but found nothing runnable at '\(python)'; pass --python PATH or set ISTHMUS_PYTHON")
        }
    }

    private func launch(_ slot: Slot) throws {
        var env = ProcessInfo.processInfo.environment
        for (k, v) in configuration.environment { env[k] = v }
        env["ISTHMUS_ENDPOINT"] = endpoint
        env["ISTHMUS_TOKEN"] = token
        env["ISTHMUS_SLOT"] = String(slot.index)
        let cores = ProcessInfo.processInfo.activeProcessorCount
        // One core stays with the host (reader, batcher, I/O thread): an idle OpenBLAS thread
        // spins for a while after each call, and with 1 worker on 2 cores a second BLAS thread
        // took the host's core (W2, 64K-row batches: 1.3 s of CPU for 2M rows instead of
        // 0.83 s, and a lower rate). Users who want every core set ISTHMUS_THREADS or --env.
        if let threads = configuration.threadsPerWorker {
            env["ISTHMUS_THREADS"] = String(threads)
        } else if env["ISTHMUS_THREADS"] == nil {
            env["ISTHMUS_THREADS"] = String(Swift.max(1, (cores - 1) / Swift.max(1, configuration.workers)))
        }
        if let limit = configuration.workerMemoryLimit { env["ISTHMUS_MEMORY_LIMIT"] = String(limit) }
        env["PYTHONUNBUFFERED"] = "1"
        // Batch-sized buffers come and go every few milliseconds; by default glibc serves them
        // with fresh mmap()s whose pages the kernel must zero each time (measured: W2 went from
        // 12 to 16 M rows/s with one worker when the heap keeps them). Users may override both.
        for key in ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"] where env[key] == nil { env[key] = String(1 << 30) }
        env["ISTHMUS_HOST_PID"] = String(getpid())
        let log = configuration.log
        let shared = self.shared
        let wakeWrite = self.wakeWrite
        slot.generation += 1
        slot.identity = nil
        slot.phase = .starting
        slot.launchedAt = now()
        slot.lastHeard = slot.launchedAt
        let python = Interpreter.resolve(configuration.python)
        let index = slot.index, generation = slot.generation
        do {
            guard let spawner else { throw BridgeError(.startup, "no spawn thread: local workers are started after prepare()") }
            slot.process = try spawner.run { try WorkerProcess(
                python: python, arguments: ["-m", "isthmus.worker"], environment: env,
                slot: index, generation: generation,
                onLine: { index, _, line in log("[worker \(index)] \(line)") },
                onExit: { index, generation, cause, tail in
                    shared.locked {
                        shared.events.append(.exited(slot: index, generation: generation, cause: cause, stderrTail: tail))
                        shared.condition.broadcast()
                    }
                    var b: UInt8 = 1
                    _ = write(wakeWrite, &b, 1)
                }) }
        } catch let error as BridgeError {
            throw error
        } catch {
            throw BridgeError(.startup, "cannot start the Python interpreter '\(configuration.python)': \(error.localizedDescription)")
        }
    }

    // MARK: - The loop

    /// The I/O thread: turns the loop whenever the socket, the wake-up pipe or a deadline says
    /// so, until the run is over; then closes everything.
    func run() {
        var wakeReadable = true
        while true {
            baton.lock()
            if turn(wakeReadable: wakeReadable) {
                finish()
                baton.unlock()
                return
            }
            let watch = !(configuration.callerDriven && readySignalled && slots.allSatisfy { $0.phase == .ready })
            // Callers of a caller-driven pool wait for their own answers; otherwise this thread
            // waits for the doorbells too.
            let bells = configuration.callerDriven ? [] : busyDoorbells()
            baton.unlock()
            wakeReadable = waitForWork(timeoutMilliseconds: nextTimeoutMilliseconds(), watchSocket: watch, also: bells)
        }
    }

    /// Turns the loop for a caller waiting on its own request until `satisfied()` holds (its
    /// answer arrived), the pool failed or is stopping. Returns at once if the I/O thread has
    /// finished. A caller that stops because the run is ending wakes the I/O thread to finish it.
    func drive(until satisfied: () -> Bool) {
        baton.lock()
        defer { baton.unlock() }
        var wakeReadable = false
        // One polling budget per wait, not per wake-up: a slow answer costs it once.
        var pollUntil: Double?
        while true {
            if shared.locked({ shared.ioFinished }) { return }
            if turn(wakeReadable: wakeReadable) {
                poke()
                return
            }
            if satisfied() {
                // The I/O thread of a pipeline pool waits on the doorbells it saw busy: this
                // caller may have rung others meanwhile, so it looks again.
                if !configuration.callerDriven { poke() }
                return
            }
            let bells = busyDoorbells()
            if !bells.isEmpty && pollUntil == nil {
                let busy = slots.filter { !$0.inFlight.isEmpty }.count
                pollUntil = now() + SpinPolicy.budget(configured: configuration.spinWait, cpus: cpus, busyWorkers: busy)
            }
            if let until = pollUntil, !bells.isEmpty, let ready = pollBriefly(bells, until: until) {
                wakeReadable = ready
                continue
            }
            wakeReadable = waitForWork(timeoutMilliseconds: nextTimeoutMilliseconds(), also: bells)
        }
    }

    /// The reply FIFOs of the workers with a batch in a doorbell (holder of the baton).
    private func busyDoorbells() -> [Int32] {
        slots.compactMap { $0.doorbellOpen && $0.doorbellBusy ? $0.doorbell?.replyFD : nil }
    }

    /// One turn of the loop, by the holder of the baton: drains the wake-up pipe when it was
    /// readable, receives and handles every message, process exit and deadline, sends what the
    /// credits allow. Returns true when the run is over (failed, stopped or done).
    private func turn(wakeReadable: Bool) -> Bool {
        if wakeReadable {
            var drain = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            _ = withUnsafeMutableBytes(of: &drain) { read(wakeFD, $0.baseAddress, $0.count) }
        }
        repeat {
            receiveAll()
            receiveDoorbells()
            handleEvents()
            takeInbox()
            checkDeadlines()
            if failed || shared.locked({ shared.stopRequested }) { return true }
            dispatch()
            signalReadyIfAllReady()
            if isDone() { return true }
            // The sends above may have taken the socket's notice of a message that arrived in
            // the meantime: look again, so no message waits behind a quiet descriptor.
        } while router.events.contains(.readable)
        return false
    }

    /// Sleeps until the wake-up pipe, the socket (unless `watchSocket` is false) or one of the
    /// `also` descriptors (doorbells) is readable, or the timeout; returns whether the wake-up
    /// pipe was readable.
    private func waitForWork(timeoutMilliseconds: Int, watchSocket: Bool = true, also: [Int32] = []) -> Bool {
        var fds = pollSet(watchSocket: watchSocket, also: also)
        return pollOnce(&fds, timeoutMilliseconds: timeoutMilliseconds) ?? false
    }

    /// Polls the doorbells `fds`, the wake-up pipe and the socket without sleeping until
    /// `until` (see `SpinPolicy`). Returns nil when nothing became readable in time, else
    /// whether the wake-up pipe did (a submit, an exit, a stop), for the next turn.
    private func pollBriefly(_ fds: [Int32], until: Double) -> Bool? {
        var set = pollSet(watchSocket: true, also: fds)
        while now() < until {
            if let wake = pollOnce(&set, timeoutMilliseconds: 0) { return wake }
        }
        return nil
    }

    /// The wake-up pipe first, then the socket (when `watchSocket`), then `also`.
    private func pollSet(watchSocket: Bool, also: [Int32]) -> [pollfd] {
        ([wakeFD] + (watchSocket ? [socketFD] : []) + also).map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    }

    /// One poll(2) over a `pollSet`: nil when nothing became readable within the timeout, else
    /// whether the wake-up pipe did.
    private func pollOnce(_ fds: inout [pollfd], timeoutMilliseconds: Int) -> Bool? {
        let n = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), Int32(timeoutMilliseconds)) }
        return n > 0 ? fds[0].revents & Int16(POLLIN) != 0 : nil
    }

    /// Wakes whoever polls the wake-up pipe (the I/O thread, a driving caller).
    private func poke() {
        var b: UInt8 = 1
        _ = write(wakeWrite, &b, 1)
    }

    private var failed: Bool { shared.locked { shared.failure != nil } }

    private func fail(_ error: BridgeError) {
        shared.locked {
            if shared.failure == nil { shared.failure = error }
            shared.condition.broadcast()
        }
    }

    private func nextTimeoutMilliseconds() -> Int {
        // Poll at least every 100 ms so deadlines, process exits and heartbeats are noticed.
        var ms = 100
        if let t = configuration.batchTimeout { ms = Swift.min(ms, Swift.max(1, Int(t * 250))) }
        return ms
    }

    private func isDone() -> Bool {
        shared.locked { shared.inputFinished && shared.inbox.isEmpty } && queue.isEmpty && slots.allSatisfy { $0.inFlight.isEmpty }
            && readySignalled
    }

    private func signalReadyIfAllReady() {
        guard !readySignalled else { return }
        if slots.allSatisfy({ $0.phase == .ready }) {
            readySignalled = true
            onReady?()
        }
    }

    private func finish() {
        stopping = true
        // CLOSE every live worker, wait briefly for them to leave, then kill stragglers.
        for slot in slots where slot.identity != nil && (slot.process == nil || slot.process?.isRunning == true) {
            send(to: slot, [Envelope(kind: .close).encoded], payload: [], json: ControlDocuments.encode(ControlDocuments.Close(reason: "run finished")))
        }
        // Wait for local processes to exit and remote workers to say BYE (their CLOSE must be
        // delivered before the socket closes: the socket has no linger).
        let deadline = now() + 2
        while now() < deadline && slots.contains(where: { $0.process?.isRunning == true || ($0.process == nil && $0.identity != nil && !$0.saidBye) }) {
            var poller = Poller()
            poller.add(router)
            _ = try? poller.poll(timeoutMilliseconds: 5)
            receiveAll()
        }
        for slot in slots where slot.process?.isRunning == true { slot.process?.kill(reason: "did not exit after CLOSE") }
        spawner?.stop()
        router.close()
        if let directory { RunDirectory.remove(directory) }
        if !readySignalled {
            readySignalled = true
            onReady?()
        }
        shared.locked {
            shared.ioFinished = true
            shared.stats.workersAlive = 0
            shared.condition.broadcast()
        }
    }

    // MARK: - Inbound

    private func receiveAll() {
        while let frames = try? router.receive(dontWait: true) {
            handle(frames)
        }
    }

    /// Answers that came through a doorbell: handled exactly like the same message from the
    /// socket, once copied out of the mailbox.
    private func receiveDoorbells() {
        for s in slots where s.doorbellOpen && s.doorbellBusy {
            guard let bell = s.doorbell, let identity = s.identity else { continue }
            let generation = s.generation
            for ring in bell.rings() {
                // A fault below replaces the worker: its other rings are void.
                guard s.generation == generation && s.phase == .ready && s.doorbellOpen else { break }
                let j = Int(ring) - 1
                // Only the answer to the batch in request mailbox j may come through reply
                // mailbox j; anything else would leave that batch waiting forever (§18.3).
                guard let asked = s.inFlight.first(where: { $0.doorbellSlot == j }) else {
                    workerFault(s, "rang its doorbell for mailbox \(j) of \(bell.slots), expected one of the mailboxes it was rung for")
                    break
                }
                let frames: [[UInt8]]
                let envelope: Envelope
                do {
                    frames = try bell.takeReply(slot: j)
                    envelope = try frames[0].withUnsafeBytes { try Envelope.decode($0) }
                } catch {
                    workerFault(s, "rang its doorbell with a malformed reply mailbox: \(error)")
                    break
                }
                guard envelope.kind == .result || envelope.kind == .error,
                      envelope.sequence == asked.sequence && envelope.attempt == asked.attempt else {
                    workerFault(s, "rang its doorbell with \(envelope.kind) for batch \(envelope.sequence) attempt \(envelope.attempt), expected the RESULT or ERROR of the batch it was rung for")
                    break
                }
                handle([Message.copy(identity)] + frames.map { Message.copy($0) })
            }
        }
    }

    private func slot(for identity: [UInt8]) -> Slot? {
        slots.first { $0.identity == identity }
    }

    private func handle(_ frames: [Message]) {
        guard frames.count >= 2 else { return }
        let identity = Array(frames[0].bytes)
        let who = String(decoding: identity, as: UTF8.self)
        let envelope: Envelope
        do {
            envelope = try Envelope.decode(frames[1].bytes)
        } catch {
            if error.versionMismatch, slot(for: identity) == nil, let hello = try? ControlDocuments.decode(ControlDocuments.Hello.self, frames.count > 2 ? frames[2].bytes : UnsafeRawBufferPointer(start: nil, count: 0), what: "HELLO"), hello.token == token {
                fail(BridgeError(.versionMismatch, "the worker's isthmus helper \(hello.helper) speaks protocol \(hello.protocol) but this host speaks \(Envelope.major).\(Envelope.minor); install the matching helper with: \(configuration.python) -m pip install 'isthmus==\(BridgeVersion.helper)' (or the python/ folder of this release)"))
                return
            }
            if let s = slot(for: identity) {
                workerFault(s, "sent a malformed message: \(error.message)")
            } else {
                configuration.log("isthmus: ignored a malformed message from unknown peer '\(who)': \(error.message)")
            }
            return
        }
        do {
            try MessageRules.check(envelope, frames: frames.count - 1, from: .worker)
        } catch {
            if let s = slot(for: identity) { workerFault(s, "sent a message that breaks the protocol: \(error.message)") }
            else { configuration.log("isthmus: ignored a message from unknown peer '\(who)': \(error.message)") }
            return
        }
        if envelope.kind == .hello {
            handleHello(identity: identity, frames: frames)
            return
        }
        guard let s = slot(for: identity) else {
            configuration.log("isthmus: ignored \(envelope.kind) from unknown peer '\(who)'")
            return
        }
        // A worker being replaced, or any worker once the run has failed, is not listened to:
        // its batches are resent (or the run ends), and a late answer must not be taken.
        if envelope.kind == .bye {
            s.saidBye = true
            return
        }
        guard s.phase != .dying && s.phase != .stopped && !failed else { return }
        s.lastHeard = now()
        switch envelope.kind {
        case .ready: handleReady(s, frames)
        case .result: handleResult(s, envelope, frames)
        case .error: handleError(s, envelope, frames)
        case .release: handleRelease(s, frames)
        default: break  // HEARTBEAT only proves the worker is alive
        }
    }

    private func handleHello(identity: [UInt8], frames: [Message]) {
        let who = String(decoding: identity, as: UTF8.self)
        guard frames.count >= 3, let hello = try? ControlDocuments.decode(ControlDocuments.Hello.self, frames[2].bytes, what: "HELLO") else {
            configuration.log("isthmus: refused peer '\(who)': its HELLO has no valid JSON document")
            return
        }
        guard remote || RunDirectory.constantTimeEquals(hello.token, token) else {
            configuration.log("isthmus: refused peer '\(who)' (pid \(hello.pid)): wrong run token")
            sendRaw(identity, [Envelope(kind: .close).encoded, ControlDocuments.encode(ControlDocuments.Close(reason: "wrong run token"))])
            return
        }
        let candidate: Slot?
        if remote {
            // Remote workers do not know their slot: the first free one is theirs.
            candidate = slots.first { $0.identity == nil && $0.phase == .starting }
        } else if hello.slot >= 0 && hello.slot < slots.count, let pid = slots[hello.slot].process?.pid, pid == Int32(hello.pid) {
            candidate = slots[hello.slot]
        } else {
            candidate = nil
        }
        guard let s = candidate, s.identity == nil, s.phase == .starting else {
            configuration.log("isthmus: refused peer '\(who)' (pid \(hello.pid), slot \(hello.slot)): not a worker this host is waiting for")
            sendRaw(identity, [Envelope(kind: .close).encoded, ControlDocuments.encode(ControlDocuments.Close(reason: "unexpected worker"))])
            return
        }
        s.identity = identity
        s.saidBye = false
        s.phase = .opening
        s.lastHeard = now()
        if remote { configuration.log("isthmus: worker \(s.index) joined from pid \(hello.pid) (\(who))") }
        var open = ControlDocuments.Open(stages: configuration.stages, heartbeatMs: Int(configuration.heartbeatInterval * 1000),
                                         missedHeartbeats: configuration.missedHeartbeats, slot: s.index, workers: slots.count)
        if let arena, !remote, hello.capabilities?.contains("shm") == true {
            open.shm = ControlDocuments.ShmOffer(path: arena.path, size: arena.size)
            if hello.capabilities?.contains("doorbell") == true {
                open.doorbell = s.doorbell?.offer
            }
        }
        s.doorbellOffered = open.doorbell != nil
        s.inputFiles = open.shm != nil && configuration.shareInputFiles == .on && hello.capabilities?.contains("input_file") == true
            && !s.inputFilesRefused
        send(to: s, [Envelope(kind: .open).encoded], payload: [schemaMessage], json: ControlDocuments.encode(open))
    }

    private func handleReady(_ s: Slot, _ frames: [Message]) {
        guard s.phase == .opening else { workerFault(s, "sent READY twice"); return }
        guard frames.count >= 3, let ready = try? ControlDocuments.decode(ControlDocuments.Ready.self, frames[2].bytes, what: "READY") else {
            workerFault(s, "sent a READY without a valid JSON document")
            return
        }
        var schemaFrames = frames.dropFirst(3).makeIterator()
        var last: Schema?
        for stage in ready.stages where stage.hasSchema {
            guard let frame = schemaFrames.next() else { workerFault(s, "READY announced a schema it did not send"); return }
            do {
                last = try BatchCodec.decodeSchema(frame)
            } catch {
                workerFault(s, "sent an output schema that does not decode: \(error)")
                return
            }
        }
        if ready.stages.last?.hasSchema == true { declaredOutputSchema = last }
        s.shm = ready.shm == true && arena != nil && !remote
        if let error = ready.shmError, arena != nil {
            configuration.log("isthmus: worker \(s.index) cannot map the shared arena (\(error)); its batches travel as frames over ZeroMQ")
        }
        s.doorbellOpen = s.shm && s.doorbellOffered && ready.doorbell == true
        if let error = ready.doorbellError, s.doorbell != nil {
            configuration.log("isthmus: worker \(s.index) cannot open its doorbells (\(error)); its batches go through the socket")
        }
        s.phase = .ready
        shared.locked { shared.stats.workersAlive = slots.filter { $0.phase == .ready }.count }
    }

    private func handleResult(_ s: Slot, _ envelope: Envelope, _ frames: [Message]) {
        guard let index = s.inFlight.firstIndex(where: { $0.sequence == envelope.sequence && $0.attempt == envelope.attempt }) else {
            configuration.log("isthmus: worker \(s.index) sent a RESULT for batch \(envelope.sequence) attempt \(envelope.attempt), which it does not hold; ignored")
            // Its answer is dropped, but the input regions it gives back are still given back.
            if envelope.flags & Envelope.shmFlag != 0, let last = frames.last {
                _ = release(RegionDescriptors.releasedTail(last.bytes), by: s)
            }
            return
        }
        let batch = s.inFlight[index]
        var payloadStart = 2
        var failures: [ControlDocuments.RowFailure] = []
        if envelope.flags & Envelope.rowErrorsFlag != 0 {
            guard frames.count >= 3, let doc = try? ControlDocuments.decode(ControlDocuments.RowFailures.self, frames[2].bytes, what: "row failures") else {
                workerFault(s, "sent a RESULT with the ROW_ERRORS flag but no valid failures document")
                return
            }
            guard doc.failed.allSatisfy({ $0.row >= 0 && $0.row < batch.rows }) else {
                workerFault(s, "reported failed rows outside batch \(batch.sequence) of \(batch.rows) rows")
                return
            }
            failures = doc.failed
            payloadStart = 3
        }
        // The payload: a region of the arena the host offered with the BATCH, or frames.
        var inArena: (lease: ArenaLease, length: Int)?
        if envelope.flags & Envelope.shmFlag != 0 {
            guard frames.count == payloadStart + 1, let offered = batch.offered, let lease = batch.resultRegion else {
                workerFault(s, "sent a RESULT for batch \(batch.sequence) with the SHM flag: expected an Arrow IPC payload (the batch had no result region) but found \(frames.count - payloadStart) descriptor frame\(frames.count - payloadStart == 1 ? "" : "s")")
                return
            }
            do {
                let d = try RegionDescriptors.Result.decode(frames[payloadStart].bytes, offered: offered)
                inArena = (lease, d.length)
                guard release(d.released, by: s) else { return }
            } catch {
                workerFault(s, "sent a RESULT for batch \(batch.sequence) with a bad region descriptor: \(error.message)")
                return
            }
        }
        let bytes = inArena?.length ?? frames.dropFirst(payloadStart).reduce(0) { $0 + $1.count }
        if bytes > configuration.maxResultBytes {
            fail(BridgeError(.schemaMismatch, "stage \(configuration.stageNames) batch \(batch.sequence) rows \(rowRange(batch)): expected a result of at most \(configuration.maxResultBytes) bytes (--max-result-bytes) but found \(bytes) bytes"))
            return
        }
        if batch.payloadBytes > 0 {
            // Follow the result size closely upwards and slowly downwards.
            resultRatio = Swift.max(Double(bytes) / Double(batch.payloadBytes), resultRatio * 0.95)
        }
        let batches: [RecordBatch]
        do {
            if let (lease, length) = inArena {
                // Copied out before it is validated: the worker maps the arena read-write, and
                // validated bytes must not change under the host's readers (reorder buffer,
                // sinks). The copy replaces the join of a multi-frame payload, and the region
                // is free again as soon as the batch is answered.
                batches = try BatchCodec.decodeResult(Buffer(copying: UnsafeRawBufferPointer(start: lease.pointer, count: length)))
            } else {
                batches = try BatchCodec.decodeResult(Array(frames.dropFirst(payloadStart)))
            }
        } catch {
            workerFault(s, "sent a RESULT for batch \(batch.sequence) that is not a valid Arrow IPC stream: \(error)")
            return
        }
        if let expected = declaredOutputSchema ?? outputSchema {
            for b in batches where b.schema != expected && !(b.schema.fields.isEmpty && b.length == 0) {
                fail(BridgeError(.schemaMismatch, "stage \(configuration.stageNames) batch \(batch.sequence) rows \(rowRange(batch)): expected output schema \(SchemaText.short(expected)) but found \(SchemaText.short(b.schema))"))
                return
            }
        } else if let first = batches.first(where: { !$0.schema.fields.isEmpty }) {
            outputSchema = first.schema
        }
        let rows = batches.reduce(0) { $0 + $1.length }
        if configuration.requireSameRowCount && rows != batch.rows - failures.count {
            fail(BridgeError(.schemaMismatch, "stage \(configuration.stageNames) batch \(batch.sequence) rows \(rowRange(batch)): expected \(batch.rows) result rows (one per input row, needed by --keep-input) but found \(rows)"))
            return
        }
        s.inFlight.remove(at: index)
        s.restartsWithoutProgress = 0
        let t = now()
        s.lastResultAt = t
        var result = PoolResult(sequence: batch.sequence, rowStart: batch.rowStart, inputRows: batch.rows,
                                batches: batches.filter { !($0.schema.fields.isEmpty && $0.length == 0) }, latency: t - batch.sentAt)
        result.failures = failures
        result.input = batch.input
        shared.locked {
            if configuration.ordered { shared.completed[batch.sequence] = result } else { shared.completedFIFO.append(result) }
            shared.stats.rowsOut += rows
            shared.stats.rowsFailed += failures.count
            shared.stats.bytesIn += bytes
            shared.stats.inFlight -= 1
            if inArena != nil { shared.stats.shmResults += 1 }
        }
        // After unlocking: a waiter woken while the lock is still held would only block on it
        // again (seen with strace on one-row requests: wake, block on the mutex, wake again).
        shared.condition.broadcast()
    }

    /// RELEASE: the worker no longer references these input regions. A region is freed once
    /// the host is done with it too (its batch answered), whichever comes last.
    private func handleRelease(_ s: Slot, _ frames: [Message]) {
        let offsets: [Int]
        do {
            offsets = try RegionDescriptors.decodeRelease(frames[2].bytes)
        } catch {
            workerFault(s, "sent a malformed RELEASE: \(error.message)")
            return
        }
        _ = release(offsets, by: s)
    }

    /// Takes back input regions a worker released (RELEASE, or with a RESULT); false after
    /// a fault (a region it was not lent).
    private func release(_ offsets: [Int], by s: Slot) -> Bool {
        for offset in offsets where s.held.removeValue(forKey: offset) == nil {
            workerFault(s, "released arena region \(offset), which it was not lent")
            return false
        }
        return true
    }

    private func handleError(_ s: Slot, _ envelope: Envelope, _ frames: [Message]) {
        guard frames.count >= 3, let report = try? ControlDocuments.decode(ControlDocuments.ErrorReport.self, frames[2].bytes, what: "ERROR") else {
            workerFault(s, "sent an ERROR without a valid JSON document")
            return
        }
        let stageName = report.stage ?? (Int(envelope.stage) < configuration.stages.count ? configuration.stages[Int(envelope.stage)].name : configuration.stageNames)
        let exc = report.excType.map { "\($0): " } ?? ""
        let detail = report.traceback ?? ""
        var message = report.message
        if message.hasPrefix("stage \(stageName): ") { message.removeFirst("stage \(stageName): ".count) }
        if report.kind == "setup" || s.phase == .starting || s.phase == .opening {
            let udf = Int(envelope.stage) < configuration.stages.count ? configuration.stages[Int(envelope.stage)].udf : "?"
            fail(BridgeError(.startup, "stage \(stageName): cannot load \(udf): \(exc)\(message)", detail: detail))
            return
        }
        let batch = s.inFlight.first { $0.sequence == envelope.sequence }
        var place = "stage \(stageName)"
        if let batch {
            place += " batch \(batch.sequence)"
            if let a = report.rowStart {
                let b = report.rowEnd ?? a + 1
                place += " rows \(batch.rowStart + a)–\(batch.rowStart + b - 1)"
            } else {
                place += " rows \(rowRange(batch))"
            }
        }
        switch report.kind {
        case "schema":
            fail(BridgeError(.schemaMismatch, "\(place): \(message)", detail: detail))
        case "protocol" where batch.map(sentAsFileRange) == true && batch?.attempt == envelope.attempt:
            // A worker that cannot open, map or decode the input file (§19.2): this slot gets
            // copies in the arena from now on, and the batch is resent; nothing fails. Unless
            // the file shrank under the run: copying would touch the same missing pages.
            if let origin = batch?.origin, let missing = origin.file.shortfall(for: origin.rows) {
                fail(BridgeError(.inputChanged, "\(place): the input file shrank while it was read: \(missing)", detail: detail))
                return
            }
            if !s.inputFilesRefused {
                configuration.log("isthmus: worker \(s.index) cannot read the input file (\(message)); its batches are copied into the arena from now on")
            }
            s.inputFiles = false
            s.inputFilesRefused = true
            resend(envelope.sequence, attempt: envelope.attempt, of: s)
        case "protocol":
            fail(BridgeError(.protocolViolation, "\(place): the worker rejected a message from the host: \(message)", detail: detail))
        case "oom":
            fail(BridgeError(.workerFailed, "\(place): the worker ran out of memory (\(exc)\(message)) under its memory limit", detail: detail))
        default:
            fail(BridgeError(.userError, "\(place): the function raised \(exc)\(message)", detail: detail, retryable: report.retryable ?? false))
        }
    }

    /// Whether the batch's current attempt went to its worker as a range of the input file (§19):
    /// offered regions, but none of them its input.
    private func sentAsFileRange(_ b: PendingBatch) -> Bool {
        b.origin != nil && b.offered != nil && b.region == nil
    }

    /// Takes a batch its worker answered without a result back into the queue, as a new attempt.
    private func resend(_ sequence: UInt64, attempt: UInt32, of s: Slot) {
        guard let i = s.inFlight.firstIndex(where: { $0.sequence == sequence && $0.attempt == attempt }) else { return }
        var b = s.inFlight.remove(at: i)
        b.resultRegion = nil
        b.offered = nil
        b.doorbellSlot = nil
        b.attempt += 1
        insertQueue(b)
        shared.locked {
            shared.stats.inFlight -= 1
            shared.stats.retries += 1
        }
    }

    private func rowRange(_ b: PendingBatch) -> String {
        b.rows == 0 ? "\(b.rowStart) (empty)" : "\(b.rowStart)–\(b.rowStart + b.rows - 1)"
    }

    // MARK: - Faults, exits, restarts

    /// A worker misbehaved (bad frame, protocol violation): kill it; its exit requeues its batches.
    private func workerFault(_ s: Slot, _ what: String) {
        if s.phase == .starting || s.phase == .opening {
            // A worker that cannot complete the handshake will not do better after a restart.
            retire(s, reason: "broke the handshake")
            s.phase = .stopped
            fail(BridgeError(.startup, "worker \(s.index) \(what) during the handshake"))
            return
        }
        configuration.log("isthmus: worker \(s.index) (pid \(s.process?.pid ?? 0)) \(what); replacing it")
        s.phase = .dying
        retire(s, reason: "replaced after it \(what)")
    }

    /// Ends a worker: a local one is killed (its exit event then requeues its batches); a remote
    /// one is told to CLOSE and forgotten at once, and its slot waits for a new worker to join.
    private func retire(_ s: Slot, reason: String) {
        if let process = s.process {
            process.kill(reason: reason)
            return
        }
        if s.identity != nil {
            send(to: s, [Envelope(kind: .close).encoded], payload: [], json: ControlDocuments.encode(ControlDocuments.Close(reason: reason)))
        }
        workerExited(s, cause: .killedByHost(reason), tail: [])
    }

    private func handleEvents() {
        let events: [PoolEvent] = shared.locked {
            defer { shared.events.removeAll() }
            return shared.events
        }
        for event in events {
            switch event {
            case .exited(let index, let generation, let cause, let tail):
                let s = slots[index]
                guard generation == s.generation, !stopping else { continue }
                workerExited(s, cause: cause, tail: tail)
            }
        }
    }

    private func workerExited(_ s: Slot, cause: ExitCause, tail: [String]) {
        let pid = s.process?.pid ?? 0
        let wasStarting = s.phase == .starting || s.phase == .opening
        s.identity = nil
        s.process = nil
        // A worker that exits on its own before READY has an environment problem a restart will
        // not fix (missing package, import error); one killed by a signal is restarted (bounded).
        var killedBySignal = false
        if case .signaled = cause { killedBySignal = true }
        if wasStarting && !killedBySignal && !remote {
            fail(StartupDiagnosis.failure(slot: s.index, phase: s.phase, cause: cause, stderrTail: tail,
                                          python: configuration.python, stages: configuration.stages))
            s.phase = .stopped
            return
        }
        var lost = s.inFlight
        s.inFlight.removeAll()
        // The process is gone, and with it its mapping: everything it was lent is free again.
        s.held.removeAll()
        s.shm = false
        s.inputFiles = false
        s.doorbellOpen = false
        s.doorbell?.drain()
        for i in lost.indices {
            lost[i].resultRegion = nil
            lost[i].offered = nil
        }
        let traceback = StartupDiagnosis.lastTraceback(tail)
        configuration.log("isthmus: worker \(s.index) (pid \(pid)) \(cause); restarting it" + (lost.isEmpty ? "" : " and resending \(lost.count) batch\(lost.count == 1 ? "" : "es")"))
        for var b in lost {
            b.failures += 1
            b.lastCause = cause.description
            if b.failures > configuration.maxRetries {
                fail(BridgeError(.workerFailed, "stage \(configuration.stageNames) batch \(b.sequence) rows \(rowRange(b)): worker failed \(b.failures == 1 ? "once" : "\(b.failures) times") (last: \(cause))", detail: traceback))
                return
            }
            b.attempt += 1
            insertQueue(b)
        }
        shared.locked {
            shared.stats.restarts.append("worker \(s.index): \(cause)")
            shared.stats.retries += lost.count
            shared.stats.inFlight -= lost.count
            shared.stats.workersAlive = slots.filter { $0.phase == .ready }.count
        }
        s.restartsWithoutProgress += 1
        if s.restartsWithoutProgress > configuration.maxRetries + 2 {
            fail(BridgeError(.workerFailed, "worker \(s.index) failed \(s.restartsWithoutProgress == 1 ? "once" : "\(s.restartsWithoutProgress) times in a row") without finishing a batch (last: \(cause))", detail: traceback))
            return
        }
        if remote {
            s.phase = .starting
            s.launchedAt = now()
            configuration.log("isthmus: waiting for a worker to take slot \(s.index) on \(endpoint)")
            return
        }
        do {
            try launch(s)
        } catch let error as BridgeError {
            fail(error)
        } catch {
            fail(BridgeError(.startup, "cannot restart worker \(s.index): \(error)"))
        }
    }

    private func checkDeadlines() {
        let t = now()
        for s in slots {
            switch s.phase {
            case .starting, .opening:
                if t - s.launchedAt > configuration.startupTimeout {
                    let doing = remote && s.phase == .starting
                        ? "no worker joined on \(endpoint)"
                        : s.phase == .starting
                        ? "waiting for HELLO (starting \(configuration.python) and importing the isthmus helper)"
                        : "waiting for READY (importing \(configuration.stages.map(\.udf).joined(separator: ", ")) and running setup())"
                    fail(BridgeError(.startup, "worker \(s.index) did not become ready within \(Durations.text(configuration.startupTimeout)): \(doing)",
                                     detail: s.process?.stderrTail.suffix(10).joined(separator: "\n") ?? ""))
                    return
                }
            case .ready:
                if let timeout = configuration.batchTimeout, let oldest = s.inFlight.first {
                    let started = Swift.max(oldest.dispatchedAt, s.lastResultAt)
                    if t - started > timeout {
                        s.phase = .dying
                        retire(s, reason: "timed out after \(Durations.text(timeout)) on batch \(oldest.sequence)")
                        continue
                    }
                }
                if s.inFlight.isEmpty {
                    if t - s.lastHeard > configuration.heartbeatInterval * Double(configuration.missedHeartbeats) {
                        s.phase = .dying
                        retire(s, reason: "missed \(configuration.missedHeartbeats) heartbeats (hung or stopped)")
                    } else if t - s.lastHeartbeatSent >= configuration.heartbeatInterval {
                        s.lastHeartbeatSent = t
                        send(to: s, [Envelope(kind: .heartbeat).encoded], payload: [], json: nil)
                    }
                } else {
                    s.lastHeard = t  // busy workers answer with results, not heartbeats
                }
            case .dying, .stopped:
                break
            }
        }
    }

    // MARK: - Outbound

    private func takeInbox() {
        let fresh: [PendingBatch] = shared.locked {
            defer { shared.inbox.removeAll() }
            return shared.inbox
        }
        for b in fresh { queue.append(b) }
    }

    private func insertQueue(_ b: PendingBatch) {
        let i = queue.firstIndex { $0.sequence > b.sequence } ?? queue.endIndex
        queue.insert(b, at: i)
    }

    private func dispatch() {
        guard !queue.isEmpty else { return }
        var i = 0
        var sent = 0, shmSent = 0, bellSent = 0, fileSent = 0
        while i < queue.count {
            let b = queue[i]
            let candidates = slots.filter { $0.phase == .ready && $0.inFlight.count < configuration.credits && (b.slot == nil || b.slot == $0.index) }
            guard let s = candidates.min(by: { $0.inFlight.count < $1.inFlight.count }) else {
                if b.slot == nil && !slots.contains(where: { $0.phase == .ready && $0.inFlight.count < configuration.credits }) { break }
                i += 1
                continue
            }
            var batch = queue.remove(at: i)
            let t = now()
            if batch.sentAt == 0 { batch.sentAt = t }
            batch.dispatchedAt = t
            let head: [[UInt8]], payload: [Buffer]
            if s.shm, !s.inputFiles, batch.region == nil, batch.origin != nil, let arena, let lease = arena.lease(batch.payloadBytes) {
                // A range of the input file for a worker that cannot map it (it did not announce
                // `input_file`, or it failed to read the file): the arena copy submit skipped,
                // made here on the I/O thread (a fallback: at most an eighth of the arena). With
                // no room in the arena the batch goes as frames, as any other.
                _ = lease.fill(with: batch.payload)
                batch.payload = [lease.buffer(count: batch.payloadBytes)]
                batch.region = lease
            }
            if s.shm, batch.region != nil || (s.inputFiles && batch.origin != nil), let arena {
                // Only descriptors travel: the batch is already in the arena, or in the input
                // file the worker maps; the worker may write its result into a region of the
                // arena sized from the results seen so far.
                let wanted = Swift.min(arena.size / 8, Swift.max(64 << 10, Int(Double(batch.payloadBytes) * resultRatio * 1.25) + 4096))
                let result = arena.lease(wanted)
                batch.resultRegion = result
                let offered = RegionDescriptors.Batch(inputOffset: batch.region?.offset ?? 0, inputLength: batch.region == nil ? 0 : batch.payloadBytes,
                                                      resultOffset: result?.offset ?? 0, resultCapacity: result?.size ?? 0)
                batch.offered = offered
                if let region = batch.region {
                    s.held[region.offset] = region
                    let envelope = Envelope(kind: .batch, stage: 0, attempt: batch.attempt, sequence: batch.sequence, flags: Envelope.shmFlag)
                    head = [envelope.encoded, offered.encoded]
                } else {
                    let envelope = Envelope(kind: .batch, stage: 0, attempt: batch.attempt, sequence: batch.sequence, flags: Envelope.shmFlag | Envelope.fileFlag)
                    head = [envelope.encoded, RegionDescriptors.FileBatch(origin: batch.origin!, resultOffset: offered.resultOffset, resultCapacity: offered.resultCapacity).encoded]
                    fileSent += 1
                }
                payload = []
                shmSent += 1
            } else {
                head = [Envelope(kind: .batch, stage: 0, attempt: batch.attempt, sequence: batch.sequence).encoded]
                payload = batch.payload
            }
            batch.doorbellSlot = ring(s, head, payload: payload)
            if batch.doorbellSlot != nil { bellSent += 1 } else { send(to: s, head, payload: payload, json: nil) }
            s.inFlight.append(batch)
            sent += 1
        }
        if sent > 0 {
            let peak = arena?.peakUsed ?? 0
            shared.locked {
                shared.stats.inFlight += sent
                shared.stats.shmBatches += shmSent
                shared.stats.doorbellBatches += bellSent
                shared.stats.fileBatches += fileSent
                shared.stats.arenaPeakBytes = peak
            }
        }
    }

    private func send(to s: Slot, _ head: [[UInt8]], payload: [Buffer], json: [UInt8]?) {
        guard let identity = s.identity else { return }
        var messages = [Message.copy(identity)] + head.map { Message.copy($0) }
        if let json { messages.append(Message.copy(json)) }
        messages += payload.map { piece in
            // libzmq sends frames from its own thread, and aborts the process when send()
            // meets EFAULT: what an input file cut short under its mapping gives. Frames from
            // an input mapping are copied here, where a cut page raises SIGBUS, which ends the
            // run with "input changed" (MappedFileFaults). Only frames: batches for local
            // workers normally travel in the arena or as ranges of the file.
            if MappedFileFaults.isInputMapping(piece.bytes.baseAddress) { return Message(copying: piece.bytes) }
            return Message(buffer: ZMQBuffer(base: piece.bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, count: piece.count, owner: piece.storage))
        }
        do {
            try router.send(messages)
        } catch {
            configuration.log("isthmus: cannot send to worker \(s.index): \(error)")
        }
    }

    /// Sends a BATCH through the worker's doorbell when it has one open and a free mailbox;
    /// returns the mailbox, or nil when the message must go through the socket.
    private func ring(_ s: Slot, _ head: [[UInt8]], payload: [Buffer]) -> Int? {
        guard let j = s.freeDoorbellSlot, let bell = s.doorbell else { return nil }
        let frames = head.map { h in h.withUnsafeBytes { Buffer(copying: $0) } } + payload
        return withExtendedLifetime(frames) { bell.send(frames.map(\.bytes), slot: j) } ? j : nil
    }

    private func sendRaw(_ identity: [UInt8], _ frames: [[UInt8]]) {
        _ = try? router.send([Message.copy(identity)] + frames.map { Message.copy($0) })
    }
}

/// Monotonic seconds.
func now() -> Double { MonotonicClock.seconds() }

/// The monotonic clock every deadline and latency uses.
public enum MonotonicClock {
    /// Seconds since an arbitrary fixed point; never goes back.
    public static func seconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// Formats durations for messages.
enum Durations {
    static func text(_ seconds: Double) -> String {
        if seconds >= 1 { return seconds == seconds.rounded() ? "\(Int(seconds))s" : "\(seconds)s" }
        return "\(Int((seconds * 1000).rounded()))ms"
    }
}

/// Versions the bridge expects.
public enum BridgeVersion {
    /// The helper package version this host ships with.
    public static let helper = "0.1.0"
    /// The protocol version.
    public static let protocolVersion = "\(Envelope.major).\(Envelope.minor)"
}

/// Short schema text for one-line messages.
enum SchemaText {
    static func short(_ s: Schema) -> String {
        "(" + s.fields.map { "\($0.name): \($0.type)" }.joined(separator: ", ") + ")"
    }
}

/// Finds an interpreter named without a path on `PATH`.
enum Interpreter {
    static func resolve(_ name: String) -> String {
        guard !name.contains("/") else { return name }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return name
    }
}
