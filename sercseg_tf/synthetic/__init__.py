"""Synthetic ICSI cases: the embedded default data (clinical videos are private).

`generator` writes cases (video, one PNG per second, LabelMe JSON, exact geometry);
`scene` draws each case's random geometry, `render` paints frames, `geometry` holds the
shape primitives they share.
"""
