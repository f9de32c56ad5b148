"""instrument-id core: the instrument list, audio settings, audio I/O and the 26 features, shared by train, tflite and serving."""

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import INSTRUMENTS, NUM_INSTRUMENTS, column_names
from instrument_id.params import AudioParams

__all__ = ["AudioParams", "INSTRUMENTS", "NUM_INSTRUMENTS", "InstrumentIdError", "column_names"]
__version__ = "0.1.0"
