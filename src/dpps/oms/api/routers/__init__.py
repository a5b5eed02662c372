"""One APIRouter per resource; ``dpps.oms.api.app.ROUTERS`` lists them."""
