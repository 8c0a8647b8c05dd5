"""Sans-I/O analysis: flows, TCP state and sequence analysis, reassembly, application
state machines, retries. Consumes decoded segments or reassembled streams, emits typed events."""
