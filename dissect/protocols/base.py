"""The field-tree model shared by every protocol module (display path).

A ``Layer`` is one protocol's header (or message) inside a frame: its protocol name,
its OSI layer (decided by :mod:`dissect.osi`, never by the protocol module), its
fields with byte offset and length *in the frame*, and any named anomalies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dissect.osi import Osi, layer_of


@dataclass(slots=True)
class Field:
    name: str
    value: Any
    offset: int
    length: int
    doc: str = ""

    def to_record(self) -> dict:
        v = self.value
        if isinstance(v, (bytes, bytearray, memoryview)):
            v = bytes(v).hex()
        return {"name": self.name, "value": v, "offset": self.offset, "length": self.length}


@dataclass(slots=True)
class Layer:
    protocol: str
    offset: int
    length: int = 0
    fields: list[Field] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)

    @property
    def osi(self) -> Osi:
        return layer_of(self.protocol)

    def add(self, name: str, value: Any, offset: int, length: int, doc: str = "") -> Field:
        f = Field(name, value, offset, length, doc)
        self.fields.append(f)
        return f

    def get(self, name: str, default: Any = None) -> Any:
        for f in self.fields:
            if f.name == name:
                return f.value
        return default

    def to_record(self) -> dict:
        rec = {
            "osi": int(self.osi),
            "layer": self.osi.label,
            "protocol": self.protocol,
            "offset": self.offset,
            "length": self.length,
            "fields": [f.to_record() for f in self.fields],
        }
        if self.anomalies:
            rec["anomalies"] = list(self.anomalies)
        return rec
