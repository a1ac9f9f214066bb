"""The live web page (served by ``pumpkin.web``), packaged as data so an installed pmk can serve it."""
