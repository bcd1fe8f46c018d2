-- A running simulation's progress (GET /v1/simulations/{id}, the console's simulation page):
-- its phase, records read of those expected and account cycles priced, with the percentage
-- they make (server.simulation.engine.Progress). The worker writes it at most once a second,
-- from its own connection: the simulation's snapshot transaction writes nothing.
ALTER TABLE simulations ADD COLUMN progress jsonb;
