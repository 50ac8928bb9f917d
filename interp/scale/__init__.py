"""Scale-out: the same analyses, sharded across Ray workers (``pip install interp[scale]``)."""
