"""Helpers the tests share."""
from __future__ import annotations


def one_line_error(result, *fragments, code: int = 2) -> str:
    """A CLI result that failed with ``code`` and one line on stderr (no traceback) holding every fragment."""
    assert result.exit_code == code, (result.exit_code, result.output)
    text = result.stderr.strip()
    assert len(text.splitlines()) == 1, text
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in text, (f, text)
    return text
