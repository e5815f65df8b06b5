"""A small, immutable model of a MIDI performance and the edits the corpus builder makes.

Every source (music21 scores, abc2midi and mma output) becomes a :class:`Performance`:
notes with absolute start/end ticks, controller and program events, and a tempo map.
The edits (orchestration, mixing, transposition, tempo, looping, cropping, a final
ritardando) are pure functions returning a new performance, and :func:`write_midi`
writes the result as a type-0 Standard MIDI File for fluidsynth. Reading and writing
go through ``mido`` (imported when a file is read or written).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from longplay.data.corpus.gm import DRUM_CHANNEL

__all__ = [
    "DEFAULT_TEMPO_US",
    "ChannelStats",
    "Control",
    "Note",
    "Performance",
    "channel_stats",
    "crop",
    "loop",
    "read_midi",
    "ritardando",
    "scale_tempo",
    "set_mix",
    "set_programs",
    "transpose",
    "write_midi",
]

DEFAULT_TEMPO_US = 500_000
"""MIDI's default tempo: 500000 microseconds per quarter note (120 BPM)."""

CC_BANK_MSB, CC_BANK_LSB, CC_PAN, CC_REVERB, CC_CHORUS = 0, 32, 10, 91, 93
CC_RESET_ALL = 121


@dataclass(frozen=True)
class Note:
    """A sounding note from ``start`` to ``end`` (ticks, end > start)."""

    start: int
    end: int
    channel: int
    pitch: int
    velocity: int
    track: int = 0


@dataclass(frozen=True)
class Control:
    """A channel event: ``kind`` "program" (value = program), "cc" (number = controller),
    or "pitchwheel" (value in [-8192, 8191])."""

    tick: int
    channel: int
    kind: str
    number: int
    value: int


@dataclass(frozen=True)
class Performance:
    """A MIDI performance in absolute ticks.

    Attributes:
        ticks_per_quarter: MIDI resolution.
        notes: sorted by start tick.
        controls: sorted by tick.
        tempos: (tick, microseconds per quarter) sorted by tick, the first at tick 0.
        time_signatures: (tick, numerator, denominator) sorted by tick.
    """

    ticks_per_quarter: int
    notes: tuple[Note, ...]
    controls: tuple[Control, ...] = ()
    tempos: tuple[tuple[int, int], ...] = ((0, DEFAULT_TEMPO_US),)
    time_signatures: tuple[tuple[int, int, int], ...] = ()

    @classmethod
    def build(cls, ticks_per_quarter: int, notes: Iterable[Note],
              controls: Iterable[Control] = (), tempos: Iterable[tuple[int, int]] = (),
              time_signatures: Iterable[tuple[int, int, int]] = ()) -> Performance:
        """A performance with its events sorted and a tempo at tick 0."""
        tempo_list = sorted(dict(tempos).items())
        if not tempo_list or tempo_list[0][0] > 0:
            first = tempo_list[0][1] if tempo_list else DEFAULT_TEMPO_US
            tempo_list.insert(0, (0, first))
        return cls(
            ticks_per_quarter=ticks_per_quarter,
            notes=tuple(sorted(notes, key=lambda n: (n.start, n.channel, n.pitch, n.end))),
            controls=tuple(sorted(controls, key=lambda c: c.tick)),
            tempos=tuple(tempo_list),
            time_signatures=tuple(sorted(set(time_signatures))),
        )

    @property
    def end_tick(self) -> int:
        """The tick where the last note ends (0 without notes)."""
        return max((note.end for note in self.notes), default=0)

    @property
    def meter(self) -> tuple[int, int]:
        """The first time signature, (4, 4) when there is none."""
        return self.time_signatures[0][1:] if self.time_signatures else (4, 4)

    def seconds_at(self, tick: int) -> float:
        """Time in seconds of ``tick`` under the tempo map."""
        seconds, previous_tick, tempo = 0.0, 0, self.tempos[0][1]
        for change_tick, change_tempo in self.tempos[1:]:
            if change_tick >= tick:
                break
            seconds += (change_tick - previous_tick) * tempo / 1e6 / self.ticks_per_quarter
            previous_tick, tempo = change_tick, change_tempo
        return seconds + (tick - previous_tick) * tempo / 1e6 / self.ticks_per_quarter

    def tick_at(self, seconds: float) -> int:
        """The first tick at or after ``seconds`` under the tempo map."""
        elapsed, previous_tick, tempo = 0.0, 0, self.tempos[0][1]
        for change_tick, change_tempo in self.tempos[1:]:
            span = (change_tick - previous_tick) * tempo / 1e6 / self.ticks_per_quarter
            if elapsed + span >= seconds:
                break
            elapsed += span
            previous_tick, tempo = change_tick, change_tempo
        ticks = (seconds - elapsed) * 1e6 * self.ticks_per_quarter / tempo
        return previous_tick + max(0, math.ceil(ticks - 1e-9))

    @property
    def duration_s(self) -> float:
        """Seconds until the last note ends."""
        return self.seconds_at(self.end_tick)

    def quarter_bpm(self) -> float:
        """The first tempo in quarter notes per minute."""
        return 60e6 / self.tempos[0][1]


@dataclass(frozen=True)
class ChannelStats:
    """What a channel plays: note count, mean pitch, most simultaneous notes, tracks."""

    channel: int
    num_notes: int
    mean_pitch: float
    max_polyphony: int
    tracks: frozenset[int]


def channel_stats(performance: Performance) -> dict[int, ChannelStats]:
    """Statistics of every channel that plays notes."""
    by_channel: dict[int, list[Note]] = defaultdict(list)
    for note in performance.notes:
        by_channel[note.channel].append(note)
    stats = {}
    for channel, notes in sorted(by_channel.items()):
        boundaries = sorted([(n.start, 1) for n in notes] + [(n.end, -1) for n in notes],
                            key=lambda b: (b[0], b[1]))
        active = peak = 0
        for _, step in boundaries:
            active += step
            peak = max(peak, active)
        stats[channel] = ChannelStats(
            channel=channel, num_notes=len(notes),
            mean_pitch=sum(n.pitch for n in notes) / len(notes), max_polyphony=peak,
            tracks=frozenset(n.track for n in notes))
    return stats


def read_midi(path: str | os.PathLike[str]) -> Performance:
    """Read a Standard MIDI File (any type) into a performance.

    Notes are paired first-in first-out per channel and pitch (a note-on of velocity 0
    ends a note); notes never ended stop at the file's last event. System-exclusive
    and other meta events (names, key signatures, lyrics) are dropped.
    """
    import mido

    midi = mido.MidiFile(str(path))
    notes: list[Note] = []
    controls: list[Control] = []
    tempos: list[tuple[int, int]] = []
    meters: list[tuple[int, int, int]] = []
    last_tick = 0
    for track_index, track in enumerate(midi.tracks):
        tick = 0
        open_notes: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for message in track:
            tick += message.time
            last_tick = max(last_tick, tick)
            kind = message.type
            if kind == "note_on" and message.velocity > 0:
                open_notes[(message.channel, message.note)].append((tick, message.velocity))
            elif kind in ("note_on", "note_off"):
                pending = open_notes.get((message.channel, message.note))
                if pending:
                    start, velocity = pending.pop(0)
                    if tick > start:
                        notes.append(Note(start, tick, message.channel, message.note,
                                          velocity, track_index))
            elif kind == "program_change":
                controls.append(Control(tick, message.channel, "program", 0, message.program))
            elif kind == "control_change":
                controls.append(Control(tick, message.channel, "cc", message.control,
                                        message.value))
            elif kind == "pitchwheel":
                controls.append(Control(tick, message.channel, "pitchwheel", 0,
                                        message.pitch))
            elif kind == "set_tempo":
                tempos.append((tick, message.tempo))
            elif kind == "time_signature":
                meters.append((tick, message.numerator, message.denominator))
        for (channel, pitch), pending in open_notes.items():
            for start, velocity in pending:
                if last_tick > start:
                    notes.append(Note(start, last_tick, channel, pitch, velocity, track_index))
    return Performance.build(midi.ticks_per_beat, notes, controls, tempos, meters)


def write_midi(performance: Performance, path: str | os.PathLike[str], *,
               tail_s: float = 0.0) -> Path:
    """Write a type-0 Standard MIDI File; the track ends ``tail_s`` after the last note
    so that a renderer plays the release and reverb tails."""
    import mido

    events: list[tuple[int, int, object]] = []
    for tick, tempo in performance.tempos:
        events.append((tick, 0, mido.MetaMessage("set_tempo", tempo=tempo)))
    for tick, numerator, denominator in performance.time_signatures:
        events.append((tick, 0, mido.MetaMessage("time_signature", numerator=numerator,
                                                 denominator=denominator)))
    for control in performance.controls:
        if control.kind == "program":
            message = mido.Message("program_change", channel=control.channel,
                                   program=control.value)
            events.append((control.tick, 2, message))
        elif control.kind == "cc":
            message = mido.Message("control_change", channel=control.channel,
                                   control=control.number, value=control.value)
            events.append((control.tick, 1, message))
        else:
            message = mido.Message("pitchwheel", channel=control.channel, pitch=control.value)
            events.append((control.tick, 2, message))
    for note in performance.notes:
        events.append((note.start, 4, mido.Message("note_on", channel=note.channel,
                                                   note=note.pitch, velocity=note.velocity)))
        events.append((note.end, 3, mido.Message("note_off", channel=note.channel,
                                                 note=note.pitch, velocity=0)))
    # Stable sort: at one tick tempo/meter, then controllers (bank select before the
    # program), programs and pitch bends, note-offs, note-ons.
    events.sort(key=lambda event: (event[0], event[1]))
    track = mido.MidiTrack()
    previous = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - previous))
        previous = tick
    end_tick = max(performance.end_tick, previous)
    end_tick = performance.tick_at(performance.seconds_at(end_tick) + tail_s)
    track.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - previous)))
    midi = mido.MidiFile(type=0, ticks_per_beat=performance.ticks_per_quarter)
    midi.tracks.append(track)
    path = Path(path)
    midi.save(str(path))
    return path


def set_programs(performance: Performance, programs: Mapping[int, int]) -> Performance:
    """Give channel c the General MIDI program ``programs[c]`` for the whole piece (bank
    0); the channel's other program and bank changes are removed."""
    kept = [c for c in performance.controls
            if not (c.channel in programs
                    and (c.kind == "program"
                         or (c.kind == "cc" and c.number in (CC_BANK_MSB, CC_BANK_LSB))))]
    added = []
    for channel, program in sorted(programs.items()):
        if channel == DRUM_CHANNEL:
            raise ValueError("channel 10 (index 9) is the drum channel; it takes no program.")
        added += [Control(0, channel, "cc", CC_BANK_MSB, 0),
                  Control(0, channel, "cc", CC_BANK_LSB, 0),
                  Control(0, channel, "program", 0, program)]
    return replace(performance, controls=tuple(added + kept))


def set_mix(performance: Performance, pan: Mapping[int, int], reverb: Mapping[int, int],
            chorus: Mapping[int, int]) -> Performance:
    """Set each channel's stereo position (CC10), reverb send (CC91) and chorus send
    (CC93) at the start; the piece's own values of these (and reset-all-controllers
    messages, which would undo them) are removed."""
    removed = (CC_PAN, CC_REVERB, CC_CHORUS, CC_RESET_ALL)
    kept = [c for c in performance.controls if not (c.kind == "cc" and c.number in removed)]
    added = []
    for channel in sorted(set(pan) | set(reverb) | set(chorus)):
        for number, values in ((CC_PAN, pan), (CC_REVERB, reverb), (CC_CHORUS, chorus)):
            if channel in values:
                value = values[channel]
                if not 0 <= value <= 127:
                    raise ValueError(f"controller values lie in [0, 127], got {value}.")
                added.append(Control(0, channel, "cc", number, value))
    return replace(performance, controls=tuple(sorted(added + kept, key=lambda c: c.tick)))


def transpose(performance: Performance, semitones: int) -> Performance:
    """Shift every pitched note by ``semitones`` (drums stay); notes that would leave
    [0, 127] move by octaves back into range."""
    def shift(note: Note) -> Note:
        if note.channel == DRUM_CHANNEL:
            return note
        pitch = note.pitch + semitones
        while pitch > 127:
            pitch -= 12
        while pitch < 0:
            pitch += 12
        return replace(note, pitch=pitch)

    return replace(performance, notes=tuple(shift(note) for note in performance.notes))


def scale_tempo(performance: Performance, factor: float) -> Performance:
    """Play ``factor`` times faster (every tempo of the map multiplied by ``factor``)."""
    if not factor > 0:
        raise ValueError(f"the tempo factor must be positive, got {factor}.")
    tempos = tuple((tick, max(1, round(tempo / factor))) for tick, tempo in performance.tempos)
    return replace(performance, tempos=tempos)


def loop(performance: Performance, times: int, period_ticks: int) -> Performance:
    """The performance played ``times`` times, each repetition ``period_ticks`` after the
    previous (controllers, tempi and time signatures repeat with it)."""
    if times < 1 or period_ticks < 1:
        raise ValueError(f"loop needs times >= 1 and period_ticks >= 1, got {times}, "
                         f"{period_ticks}.")
    notes, controls, tempos, meters = [], [], [], []
    for k in range(times):
        offset = k * period_ticks
        notes += [replace(n, start=n.start + offset, end=n.end + offset)
                  for n in performance.notes]
        controls += [replace(c, tick=c.tick + offset) for c in performance.controls]
        tempos += [(tick + offset, tempo) for tick, tempo in performance.tempos]
        meters += [(tick + offset, a, b) for tick, a, b in performance.time_signatures]
    return Performance.build(performance.ticks_per_quarter, notes, controls, tempos, meters)


def crop(performance: Performance, end_tick: int) -> Performance:
    """Everything before ``end_tick``; notes sounding there are released at it."""
    notes = tuple(replace(n, end=min(n.end, end_tick)) for n in performance.notes
                  if n.start < end_tick)
    return replace(
        performance, notes=notes,
        controls=tuple(c for c in performance.controls if c.tick < end_tick),
        tempos=tuple(t for t in performance.tempos if t[0] < end_tick or t[0] == 0),
        time_signatures=tuple(m for m in performance.time_signatures if m[0] < end_tick))


def ritardando(performance: Performance, num_quarters: float, slowdown: float) -> Performance:
    """Slow down gradually over the last ``num_quarters`` quarter notes, reaching
    ``slowdown`` times the tempo's duration per beat at the end (one tempo event per
    eighth note)."""
    if slowdown < 1:
        raise ValueError(f"a ritardando slows down: slowdown must be >= 1, got {slowdown}.")
    end = performance.end_tick
    step = max(1, performance.ticks_per_quarter // 2)
    start = max(0, end - round(num_quarters * performance.ticks_per_quarter))
    start -= start % step
    if end - start < 2 * step:
        return performance
    base = {tick: tempo for tick, tempo in performance.tempos if tick <= start}
    tempo_at_start = base[max(base)]
    tempos = [t for t in performance.tempos if t[0] < start]
    positions = range(start, end, step)
    for i, tick in enumerate(positions):
        fraction = (i + 1) / len(positions)
        tempos.append((tick, round(tempo_at_start * (1 + (slowdown - 1) * fraction))))
    return replace(performance, tempos=tuple(tempos))
