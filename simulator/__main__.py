"""python -m simulator: run the carrier simulator as a threaded HTTP server configured by SIM_* vars."""
from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from werkzeug.serving import make_server

from .app import create_simulator, get_simulator
from .config import SimulatorConfig


def _stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends serve_forever like Ctrl-C."""
    raise KeyboardInterrupt


def main() -> int:
    """Start the server, print the URL, serve until interrupted."""
    try:
        config = SimulatorConfig.from_env()
        host = os.environ.get("SIM_HOST") or "127.0.0.1"
        raw_port = os.environ.get("SIM_PORT") or "8099"
        try:
            port = int(raw_port)
        except ValueError:
            raise ValueError(f"SIM_PORT must be an integer, got {raw_port!r}") from None
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    app = create_simulator(config)
    server = make_server(host, port, app, threaded=True)
    signal.signal(signal.SIGTERM, _stop)
    url = f"http://{host}:{server.port}"
    print(f"Carrier simulator ready at {url} (Twilio REST base URL; developer phone: {url}/phone)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        get_simulator(app).shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
