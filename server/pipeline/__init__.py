"""The mediation core: decode → normalise/validate → dedupe → merge partials → rate → commit."""
