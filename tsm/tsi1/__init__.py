"""influxd 1.6.7's series file (``_series``) and tsi1 index (``index/``): layouts in
:mod:`.format`, readers and writers in :mod:`.seriesfile` and :mod:`.index`, key forms in
:mod:`.serieskey`, the placement hash in :mod:`.xxhash`."""
