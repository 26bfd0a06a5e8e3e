#pragma once
// One factory per service, each defined in the service's own file; makeService() picks one.

#include "services/service.h"

namespace depot::delivery {

std::unique_ptr<Service> makeOrders(const ServiceOptions& options);
std::unique_ptr<Service> makePricing(const ServiceOptions& options);
std::unique_ptr<Service> makeDispatch(const ServiceOptions& options);
std::unique_ptr<Service> makeCouriers(const ServiceOptions& options);
std::unique_ptr<Service> makeTracking(const ServiceOptions& options);
std::unique_ptr<Service> makeNotifications(const ServiceOptions& options);
std::unique_ptr<Service> makeBilling(const ServiceOptions& options);
std::unique_ptr<Service> makeAnalytics(const ServiceOptions& options);

} // namespace depot::delivery
