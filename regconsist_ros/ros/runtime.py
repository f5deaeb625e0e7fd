"""Running one node: rclpy init, clear configuration errors, signal-safe shutdown on SIGINT/SIGTERM.

A node class may define ``shutdown()`` (e.g. the learner writes its final checkpoint there); it is
called once when the process is asked to stop, before the executor and the node are destroyed.

Signals (``ros2 launch`` sends SIGINT, then SIGTERM after its ``sigterm_timeout``, then SIGKILL):

* while the node is being built: SIGINT/SIGTERM abort the start (nothing is lost yet);
* while it runs: the first SIGINT/SIGTERM only asks the spin loop to stop (no exception is raised
  inside a callback or a worker); the node's ``shutdown()`` then runs to its end;
* during the shutdown: further SIGINT/SIGTERM are reported on stderr and ignored, so a second Ctrl-C
  (or launch's SIGTERM) never aborts a final checkpoint; only SIGKILL does; once the shutdown is done
  they are ignored until the process has exited.

Exit status: 0 after a clean stop, 2 for a configuration error, 1 when the shutdown failed (e.g. a
worker did not stop in time and no final checkpoint was written). A process that could not stop its
threads leaves with ``os._exit`` so that the interpreter never tears down a thread inside native code
(which aborts with "terminate called without an active exception").
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """SIGINT/SIGTERM handling by phase: ``"start"`` (raise KeyboardInterrupt), ``"spin"`` (set
    ``requested``), ``"shutdown"`` (say so on stderr, ignore)."""

    def __init__(self, name: str = "node"):
        self.name = name
        self.phase = "start"
        self.requested: list[int] = []  # signal numbers received

    def install(self) -> "StopRequest":
        for s in _STOP_SIGNALS:
            signal.signal(s, self._on_signal)
        return self

    def _on_signal(self, signum, frame) -> None:
        self.requested.append(signum)
        if self.phase == "start":
            self.phase = "shutdown"  # a second signal while this one unwinds must not raise again
            raise KeyboardInterrupt
        if self.phase == "shutdown" or len(self.requested) > 1:
            # os.write: print() from a signal handler can hit a reentrant write on stderr
            os.write(2, f"{self.name}: {signal.Signals(signum).name} during shutdown ignored "
                        f"(finishing it; SIGKILL aborts)\n".encode())

    def shutting_down(self) -> None:
        self.phase = "shutdown"


def _drain(executor, timeout: float) -> None:
    """Wait for the callbacks already handed to the executor's threads. (rclpy's MultiThreadedExecutor.shutdown
    destroys its guard condition before it joins its threads; a callback still running then ends with
    "cannot use Destroyable because destruction was requested".)"""
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(not f.done() for f in list(getattr(executor, "_futures", ()) or ())):
        time.sleep(0.01)


def _retrieve_callback_errors(executor, log) -> None:
    """Take the results of callbacks that ended while the executor stopped (an exception left in a task
    is otherwise printed at exit as "The following exception was never retrieved")."""
    for fut in list(getattr(executor, "_futures", ()) or ()):
        try:
            if fut.done() and fut.exception() is not None:
                log(f"a callback ended with {type(fut.exception()).__name__}: {fut.exception()}")
        except Exception:
            pass
    if hasattr(executor, "_futures"):
        executor._futures = []  # noqa: SLF001


def run_node(node_cls, args=None, threads: int = 4) -> int:
    """Run ``node_cls()`` until a stop signal; ``threads``: callback threads of its executor (1: rclpy's
    SingleThreadedExecutor, which costs about half the CPU time per message of the multi-threaded one:
    for nodes whose callbacks only enqueue, like the viewer)."""
    import rclpy
    from rclpy.exceptions import ParameterException
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from regconsist_ros.config import ConfigError

    # our own signal handling (StopRequest), not rclpy's: rclpy's handler would shut the context down
    # at once, before the node's shutdown() could still use it
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    name = getattr(node_cls, "__name__", "node")
    stop = StopRequest(name).install()
    node = executor = None
    code = 0

    def say(msg: str) -> None:
        print(f"{node.get_name() if node is not None else name}: {msg}", file=sys.stderr, flush=True)

    try:
        node = node_cls()
        name = node.get_name()
        stop.name = name
        executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        stop.phase = "spin"
        if stop.requested:  # a signal arrived just before the phase changed
            stop.phase = "shutdown"
        while not stop.requested and rclpy.ok():
            executor.spin_once(timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ConfigError, ValueError, ParameterException, ImportError) as e:  # ImportError: an optional back-end
        print(f"{name}: configuration error: {e}", file=sys.stderr)
        code = 2
    finally:
        stop.shutting_down()
        if node is not None:
            finish = getattr(node, "shutdown", None)
            if callable(finish):
                try:
                    finish()
                except Exception as e:  # never lose the rest of the shutdown
                    say(f"error during shutdown: {e}")
                    code = code or 1
            if executor is not None:
                _drain(executor, 10.0)
                executor.shutdown(timeout_sec=10.0)  # no callback runs once the node is destroyed
                _retrieve_callback_errors(executor, say)
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        # from here on the process only exits: SIGINT/SIGTERM are ignored at the C level (Python resets the
        # handlers it installed to the default at finalization, so a late SIGTERM would still kill it)
        for s in _STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
    if code:
        alive = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
        if alive:  # a worker still inside torch / rclpy: leave without tearing it down
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return code
