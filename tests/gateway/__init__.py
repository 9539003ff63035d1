"""Pure tests of the transcoding gateway: no server, no network."""
