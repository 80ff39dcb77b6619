"""Long Range Arena (ListOps) with exact, Orthoformer, Nystrom and Performer attention."""
