"""Turns a row's streamed text into text deltas and OpenAI-style `ToolCallDelta` pieces.

Text before the first `<tool_call>` streams as text (a possible start of the tag is held
back until decided). Inside a call, once `{"name": "...", "arguments": ` has arrived the
call's first delta carries its index, a new `call_…` id and the name; then the arguments'
JSON text streams in pieces (the object's closing `}` and the closing tag held back). A
call written in another key order is sent whole when it closes. Text after the first call
is not streamed (the non-streamed answer drops it the same way).
"""

from dataclasses import dataclass, field

from deployments.engine.tool_calls import (
    CALL_CLOSE,
    CALL_HEADER,
    CALL_OPEN,
    call_from,
    new_call_id,
)
from serve_app.contracts.wire import ToolCallDelta


def _held_prefix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


@dataclass(slots=True)
class _OpenCall:
    index: int
    id: str = ""
    name: str = ""
    args_start: int = -1  # offset of the arguments in the call's text, once known
    args_sent: int = 0


@dataclass(slots=True)
class ToolStream:
    """Feed it the row's whole text so far after each step (`feed`), then `finish`."""

    names: set[str]
    parallel: bool = True
    consumed: int = 0  # how much of the text is decided (emitted or parsed)
    calls: int = 0
    call: _OpenCall | None = None
    in_text: bool = True
    ended: bool = False
    pending: list[ToolCallDelta] = field(default_factory=list)

    def feed(self, text: str, final: bool = False) -> tuple[str, list[ToolCallDelta]]:
        out_text = ""
        while not self.ended:
            if self.in_text:
                piece, progressed = self._text_part(text, final)
                out_text += piece
            else:
                progressed = self._call_part(text, final)
            if not progressed:
                break
        deltas, self.pending = self.pending, []
        return out_text, deltas

    def _text_part(self, text: str, final: bool) -> tuple[str, bool]:
        rest = text[self.consumed :]
        at = rest.find(CALL_OPEN)
        if at == -1:
            keep = 0 if final else _held_prefix(rest, CALL_OPEN)
            piece = rest[: len(rest) - keep]
            self.consumed += len(piece)
            return (piece if self.calls == 0 else ""), False
        piece = rest[:at]
        self.consumed += at + len(CALL_OPEN)
        self.in_text = False
        self.call = _OpenCall(index=self.calls)
        return (piece if self.calls == 0 else ""), True

    def _call_part(self, text: str, final: bool) -> bool:
        call = self.call
        assert call is not None
        body = text[self.consumed :]
        close = body.find(CALL_CLOSE)
        raw = body if close == -1 else body[:close]
        if call.args_start < 0:
            header = CALL_HEADER.match(raw)
            if header is not None and header.group(1) in self.names:
                call.id, call.name, call.args_start = new_call_id(), header.group(1), header.end()
                self.pending.append(ToolCallDelta(call.index, id=call.id, name=call.name))
        if close == -1 and not final:
            if call.args_start >= 0:
                self._send_args(raw, closed=False)
            return False
        self._close_call(raw)
        self.consumed += len(body) if close == -1 else close + len(CALL_CLOSE)
        self.in_text, self.call = True, None
        if not self.parallel and self.calls >= 1:
            self.ended = True
        return close != -1

    def _send_args(self, raw: str, closed: bool) -> None:
        """Send the arguments' text decided so far (never more than the final text)."""
        call = self.call
        assert call is not None
        args = raw[call.args_start :]
        if not closed:
            args = args[: len(args) - _held_prefix(args, CALL_CLOSE)]
        args = args.rstrip()
        if args.endswith("}"):  # the call object's own `}` (or, until more comes, maybe)
            args = args[:-1].rstrip()
        if len(args) > call.args_sent:
            self.pending.append(ToolCallDelta(call.index, arguments=args[call.args_sent :]))
            call.args_sent = len(args)

    def _close_call(self, raw: str) -> None:
        call = self.call
        assert call is not None
        if call.args_start >= 0:
            self._send_args(raw, closed=True)
            self.calls += 1
            return
        parsed = call_from(raw, self.names)
        if parsed is None:
            return  # not a call of an offered tool: nothing is sent for it
        self.pending.append(ToolCallDelta(call.index, id=parsed.id, name=parsed.name))
        self.pending.append(ToolCallDelta(call.index, arguments=parsed.arguments))
        self.calls += 1
