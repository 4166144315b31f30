"""Planning: who takes which job, solved jointly (assignment for urgent batches, chained
routes for booked windows). Pure: OR-Tools and `geo.eta` only."""
