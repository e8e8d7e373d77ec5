"""Writing ``.gfix`` files: :class:`GFixWriter`.

The file is built under a hidden temporary name next to its destination and
moved into place only by a clean :meth:`GFixWriter.close`, so a failure never
leaves a partial file at the destination, nor the temporary file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from gfix_sdk._fs import temp_sibling
from gfix_sdk.bitstream.format import (
    MAX_FRAME_COUNT,
    MAX_PAYLOAD,
    MAX_SECTION_TYPE,
    FrameFlag,
    SectionFlag,
    SectionType,
    section_type_name,
)
from gfix_sdk.bitstream.header import StreamHeader, encode_header
from gfix_sdk.bitstream.sections import encode_index, encode_section_head
from gfix_sdk.errors import VideoWriteError

# Sections a reader may go without: the enhancer is an add-on for newer
# decoders; the INDEX only repeats what scanning the sections finds.
_OPTIONAL_BY_DEFAULT = frozenset({SectionType.ENHANCER, SectionType.METADATA, SectionType.INDEX})
# Types a file holds at most once.
_SINGLE = (SectionType.STREAM_INFO, SectionType.ENHANCER, SectionType.METADATA)


def _byte_view(payload: bytes | bytearray | memoryview) -> memoryview:
    # Refuse ints explicitly: bytes(10**9) would happily allocate a gigabyte.
    if isinstance(payload, int):
        raise TypeError(f"payload must be bytes-like, got {type(payload).__name__}")
    return memoryview(payload).cast("B")


class GFixWriter:
    """Writes a ``.gfix`` file section by section; use it as a context manager.

    Sections go in this order: STREAM_INFO (exactly once, first), then any of
    FRAME (via :meth:`write_frame`), ENHANCER (at most once) and other types;
    :meth:`close` appends the INDEX and publishes the file.

    The header's ``frame_count`` is written when the file is opened. If the
    number of frames written differs, :meth:`close` rewrites the header with
    the actual count (so an encoder need not know it in advance);
    :attr:`header` then holds the header as written.

    Example::

        with GFixWriter("clip.gfix", StreamHeader(320, 180, 25, 1, 2)) as out:
            out.write_section(SectionType.STREAM_INFO, info)
            out.write_frame(first, key=True)
            out.write_frame(second, key=False)

    Args:
        path: destination file; its directory must exist. An existing file is
            replaced only by a clean close.
        header: what to write in the file header.

    Raises:
        TypeError: ``header`` is not a :class:`StreamHeader`.
        IsADirectoryError: ``path`` is a directory.
        VideoWriteError: the temporary file cannot be created or written
            (e.g. the disk is full); an ``OSError`` too, with its ``errno``.
    """

    def __init__(self, path: str | os.PathLike[str], header: StreamHeader) -> None:
        if not isinstance(header, StreamHeader):
            raise TypeError(f"header must be a StreamHeader, got {type(header).__name__}")
        self._target = Path(path)
        if self._target.is_dir():
            raise IsADirectoryError(
                f"cannot write a .gfix file to {self._target}: it is a directory"
            )
        self._header = header
        self._temp = temp_sibling(self._target)
        self._closed = False
        self._written: set[int] = set()  # section types written so far
        self._frames: list[tuple[int, int]] = []  # (section offset, frame flags) for the INDEX
        try:
            self._file = open(self._temp, "xb")  # noqa: SIM115 - closed by close()/abort()
        except OSError as exc:
            raise self._write_error(exc) from exc
        with self._abort_on_failure():
            self._file.write(encode_header(header))
        self._offset = self._file.tell()

    @property
    def path(self) -> Path:
        """The destination path (the file appears there on a clean close)."""
        return self._target

    @property
    def header(self) -> StreamHeader:
        """The header as written (after :meth:`close`, with the actual frame count)."""
        return self._header

    @property
    def _has_stream_info(self) -> bool:
        return SectionType.STREAM_INFO in self._written

    @property
    def frames_written(self) -> int:
        return len(self._frames)

    @property
    def closed(self) -> bool:
        return self._closed

    def write_section(
        self, section_type: int, payload: bytes, *, optional: bool | None = None
    ) -> None:
        """Append a section.

        Args:
            section_type: a :class:`SectionType` or any code in 1..0xFFFF
                (0x8000 and up are for experiments). FRAME and INDEX are
                refused: use :meth:`write_frame`; the INDEX is written by
                :meth:`close`.
            payload: the section's bytes (any bytes-like object), at most 1 GiB.
            optional: set the OPTIONAL flag, which lets readers that do not
                know the type skip it; by default set for ENHANCER and METADATA (and on the
                INDEX that close() writes), clear for the others.

        Raises:
            TypeError: ``payload`` is not bytes-like.
            ValueError: the writer is closed, a bad type or payload size, or a
                section out of order (anything before STREAM_INFO, a second
                STREAM_INFO, ENHANCER or METADATA).
        """
        self._check_open()
        if isinstance(section_type, bool) or not isinstance(section_type, int):
            raise ValueError(f"section type must be an int, got {section_type!r}")
        if not 1 <= section_type <= MAX_SECTION_TYPE:
            raise ValueError(
                f"section type must be in 1..0x{MAX_SECTION_TYPE:x}, got {section_type}"
            )
        if section_type == SectionType.FRAME:
            raise ValueError(
                "write FRAME sections with write_frame(), which records them for the INDEX"
            )
        if section_type == SectionType.INDEX:
            raise ValueError("the INDEX section is written by close()")
        if section_type != SectionType.STREAM_INFO and not self._has_stream_info:
            raise ValueError(
                f"write the STREAM_INFO section first, before {section_type_name(section_type)}"
            )
        if section_type in _SINGLE and section_type in self._written:
            count = "exactly" if section_type == SectionType.STREAM_INFO else "at most"
            raise ValueError(f"a .gfix file holds {count} one {section_type_name(section_type)} section")
        if optional is None:
            optional = section_type in _OPTIONAL_BY_DEFAULT
        flags = SectionFlag.OPTIONAL if optional else 0
        self._write(section_type, int(flags), _byte_view(payload))
        self._written.add(section_type)

    def write_frame(self, payload: bytes, *, key: bool) -> None:
        """Append the next frame's coded bytes.

        Args:
            payload: the frame's bytes, opaque to the container (at most
                1 GiB - 1: the section also holds a flags byte).
            key: whether the frame decodes without any earlier frame.

        Raises:
            TypeError: ``payload`` is not bytes-like.
            ValueError: the writer is closed, no STREAM_INFO yet, too many
                frames, or a payload too large.
        """
        self._check_open()
        if not isinstance(key, bool):
            raise ValueError(f"key must be a bool, got {key!r}")
        if not self._has_stream_info:
            raise ValueError("write the STREAM_INFO section first, before any frame")
        if len(self._frames) >= MAX_FRAME_COUNT:
            raise ValueError(f"a .gfix file holds at most {MAX_FRAME_COUNT} frames")
        frame_flags = int(FrameFlag.KEY) if key else 0
        offset = self._offset
        self._write(SectionType.FRAME, 0, bytes([frame_flags]), _byte_view(payload))
        self._frames.append((offset, frame_flags))

    def close(self) -> None:
        """Write the INDEX, fix the header's frame count if needed, and move
        the finished file onto :attr:`path`. Does nothing if already closed.

        Raises:
            ValueError: no STREAM_INFO section was written (then nothing is
                saved and the temporary file is removed).
            VideoWriteError: the file cannot be completed or moved into
                place, e.g. the disk is full (the temporary file is removed
                too); an ``OSError`` too, with its ``errno``.
        """
        if self._closed:
            return
        if not self._has_stream_info:
            self.abort()
            raise ValueError(
                f"no STREAM_INFO section was written; nothing was saved to {self._target}"
            )
        with self._abort_on_failure():
            self._write(SectionType.INDEX, int(SectionFlag.OPTIONAL), encode_index(self._frames))
            if len(self._frames) != self._header.frame_count:
                self._header = dataclasses.replace(self._header, frame_count=len(self._frames))
                self._file.seek(0)
                self._file.write(encode_header(self._header))
            self._file.flush()
            # Make the data durable before the rename publishes it.
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temp, self._target)
        self._closed = True

    def abort(self) -> None:
        """Discard everything written: remove the temporary file and leave
        :attr:`path` as it was. Does nothing if already closed."""
        if self._closed:
            return
        self._closed = True
        # Best effort: the error that led here matters more than a failed clean-up.
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._temp.unlink(missing_ok=True)

    def __enter__(self) -> GFixWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped without close() must not leave its temporary file.
        if getattr(self, "_file", None) is not None and not self._closed:
            self.abort()

    @contextlib.contextmanager
    def _abort_on_failure(self) -> Iterator[None]:
        """Writes inside lose the file if they fail (a half-written header or
        section cannot be undone): the temporary is removed and an ``OSError``
        becomes one :class:`VideoWriteError` line; anything else is re-raised."""
        try:
            yield
        except VideoWriteError:
            raise  # from a nested write, already aborted and worded
        except OSError as exc:
            self.abort()
            raise self._write_error(exc) from exc
        except BaseException:
            self.abort()
            raise

    def _write_error(self, exc: OSError) -> VideoWriteError:
        """One clear line for a failed write (a full disk, a quota, an I/O
        error), naming the destination; the caller has removed the temporary."""
        cause = exc.strerror or str(exc) or type(exc).__name__
        return VideoWriteError(exc.errno, f"cannot write {self._target}: {cause}; nothing was saved")

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"the GFixWriter for {self._target} is closed")

    def _write(self, type_code: int, flags: int, *payload_parts: bytes | memoryview) -> None:
        length = sum(memoryview(part).nbytes for part in payload_parts)
        if length > MAX_PAYLOAD:
            raise ValueError(
                f"{section_type_name(type_code)} payload of {length} bytes exceeds the "
                f"{MAX_PAYLOAD}-byte maximum"
            )
        head = encode_section_head(type_code, flags, length)
        crc = zlib.crc32(head)
        for part in payload_parts:
            crc = zlib.crc32(part, crc)
        with self._abort_on_failure():
            self._file.write(head)
            for part in payload_parts:
                self._file.write(part)
            self._file.write(crc.to_bytes(4, "little"))
        self._offset += len(head) + length + 4


def copy_with_enhancer(source: str | os.PathLike[str], target: str | os.PathLike[str], payload: bytes) -> Path:
    """Write ``target``: the ``.gfix`` file ``source`` (header, STREAM_INFO and
    frames) with ``payload`` as its ENHANCER section -- another video on the
    same Gaussian frames, as far as a decoder can tell (for tests and
    benchmarks of the enhancer's caches)."""
    from gfix_sdk.bitstream.reader import GFixReader

    with GFixReader(source) as reader, GFixWriter(target, reader.header) as writer:
        writer.write_section(SectionType.STREAM_INFO, reader.stream_info())
        for i in range(reader.header.frame_count):
            writer.write_frame(reader.frame_payload(i), key=reader.frame_is_key(i))
        writer.write_section(SectionType.ENHANCER, payload)
    return Path(target)
