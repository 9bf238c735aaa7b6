//! The registry: every agent the orchestrator can route to, described once. Adding an agent is
//! adding its module and one entry here.

use gocoffee_core::Role;

use crate::orchestrator::{analytics_agent, search_agent, service_agent};
use crate::router::AgentSpec;

pub const SEARCH: &str = "search";
pub const CUSTOMER_SERVICE: &str = "customer-service";
pub const ANALYTICS: &str = "analytics";

/// The registered agents. The first is where a request nothing points at goes.
pub static AGENTS: &[AgentSpec] = &[
    AgentSpec {
        name: CUSTOMER_SERVICE,
        description: "Answers customers' questions about the café: opening hours, where we are, allergens and ingredients, paying, \
                      refunds, cancelling, and the status and history of your own orders; recommends what to have; hands off to staff.",
        examples: &[
            "what time do you open on saturday",
            "are you open on public holidays",
            "is my order ready",
            "where's my coffee, I ordered ten minutes ago",
            "what did I order last time",
            "can I cancel my order",
            "how do I get a refund",
            "which cryptocurrencies can I pay with",
            "my payment failed, what now",
            "does the croissant contain egg",
            "is the banana bread safe for someone with a nut allergy",
            "what should I get today",
            "recommend me something based on what I usually have",
            "do you have wifi",
            "can I bring my dog",
            "I want to speak to a manager",
            "my drink was cold, I want to complain",
        ],
        inputs: "message: the customer's question; the caller's own orders through the orders API",
        outputs: "answer with cited passages (sources), or the caller's orders, or recommendations; handoff when it can't answer",
        keywords: &[
            "open",
            "close",
            "hours",
            "my order",
            "order",
            "refund",
            "cancel",
            "pay",
            "payment",
            "allergy",
            "allergic",
            "contain",
            "recommend",
            "wifi",
            "complain",
            "where",
            "status",
            "ready",
        ],
        role: Role::Customer,
        run: service_agent,
    },
    AgentSpec {
        name: SEARCH,
        description: "Finds items on the menu: drinks and food by name, taste, ingredient, diet (vegan, dairy-free, gluten-free), \
                      temperature and price.",
        examples: &[
            "do you have oat milk lattes",
            "show me vegan food",
            "something chocolatey",
            "iced coffee",
            "a drink under $4",
            "cheapest tea on the menu",
            "gluten free snacks",
            "find me a pastry",
            "cappucino",
            "strong coffee with no milk",
            "what teas do you have",
            "anything without caffeine",
            "breakfast options",
        ],
        inputs: "message: what to look for; optional filters {category, tags, max_price_cents}",
        outputs: "ranked menu items with scores (id, name, category, price_cents, tags, score)",
        keywords: &["have", "menu", "find", "show", "looking", "search", "something", "vegan", "cheap", "cheapest", "under", "drink", "food", "options"],
        role: Role::Customer,
        run: search_agent,
    },
    AgentSpec {
        name: ANALYTICS,
        description: "Answers managers' questions about the business from the sales data: revenue, orders, best and worst sellers, \
                      busiest hours and days, preparation and wait times, cancellation and payment failure rates; flags anomalies.",
        examples: &[
            "what sold most last week",
            "when are we busiest",
            "revenue yesterday",
            "how many orders did we take today",
            "how many lattes did we sell this month",
            "what's our average order value",
            "which day of the week is slowest",
            "average preparation time this week",
            "cancellation rate last month",
            "how much did we make last week",
            "top 3 items by revenue",
            "were there any unusual sales days",
            "what share of orders were paid in crypto",
        ],
        inputs: "message: a question about sales; manager role",
        outputs: "a validated query, its result table and a one-line answer; anomaly flags on the sales series",
        keywords: &[
            "sold",
            "sell",
            "sales",
            "revenue",
            "busiest",
            "busy",
            "quietest",
            "slowest",
            "average",
            "rate",
            "takings",
            "turnover",
            "how many",
            "best seller",
            "top",
            "last week",
            "last month",
            "yesterday",
            "anomaly",
            "unusual",
        ],
        role: Role::Manager,
        run: analytics_agent,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_names_each_agent_once_and_describes_it() {
        for (i, a) in AGENTS.iter().enumerate() {
            assert!(AGENTS[..i].iter().all(|o| o.name != a.name), "{}", a.name);
            assert!(!a.description.is_empty() && a.examples.len() >= 10 && !a.keywords.is_empty(), "{}", a.name);
        }
    }
}
