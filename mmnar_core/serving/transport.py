"""Connection limits for uvicorn: a deadline for a request's headers, a keep-alive limit, a cap on open
connections, a header size cap, and an access log that never shows a query string.

Why: 150 idle or half-sent connections stayed open past 40 s (issue 18, case 11). uvicorn's keep-alive
timer starts only after a first response, so a connection that never finishes its headers was never
closed; `header_deadline_protocol` arms a timer whenever the connection waits for a request's headers
(on connect and after each response) and closes it when they do not come in time. The body's own
deadline is the server's (`ServeConfig.body_timeout_s`, answered with 408). A token in a query string
was written to the access log (case 12): the filter below replaces every query string with `?<hidden>`.
"""

from __future__ import annotations

import logging

from mmnar_core.serving.config import ServeConfig

MAX_HEADER_BYTES = 16 * 1024  # h11's buffer for an incomplete request line + headers (431 / 400 beyond)


def header_deadline_protocol(header_timeout_s: float):
    """uvicorn's h11 protocol class, closing a connection whose request headers do not arrive in time."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineProtocol(H11Protocol):
        _header_timer = None
        _waiting_cycle = None

        def _arm(self) -> None:
            self._disarm()
            self._waiting_cycle = self.cycle  # a new request replaces the cycle
            self._header_timer = self.loop.call_later(header_timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if self.cycle is self._waiting_cycle and not self.transport.is_closing():
                self.logger.info("closing a connection that sent no complete request headers in %g s", header_timeout_s)
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not self._waiting_cycle:  # the headers of a request arrived
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadlineProtocol


class HideQueryStrings(logging.Filter):
    """Access-log records show the path only: a query string (which may hold a token) becomes `?<hidden>`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?<hidden>", *args[3:])
        return True


def hide_query_strings() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, HideQueryStrings) for f in logger.filters):
        logger.addFilter(HideQueryStrings())


def uvicorn_settings(config: ServeConfig) -> dict:
    """Keyword arguments of uvicorn.Config / uvicorn.run carrying the connection limits of `config`."""
    return {
        "http": header_deadline_protocol(config.header_timeout_s),
        "timeout_keep_alive": config.keep_alive_s,
        "limit_concurrency": config.max_connections,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "timeout_graceful_shutdown": 10,
    }
