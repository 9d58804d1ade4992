#include "emissions/topic_router.hpp"

#include <algorithm>
#include <string>

namespace emissions {
namespace {

std::string quoted(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  out += text;
  out += '"';
  return out;
}

}  // namespace

TopicRouter::TopicRouter(std::span<const TopicGroup> groups) {
  std::size_t text_size = 0;
  std::size_t event_count = 0;
  for (const TopicGroup& group : groups) {
    text_size += group.topic.size();
    event_count += group.events.size();
    for (const std::string& event : group.events)
      text_size += event.size();
  }
  // Indexes are 32-bit to keep the slots small; kNoEntry is reserved.
  if (groups.size() >= detail::kNoEntry || event_count >= detail::kNoEntry) {
    throw ConfigError("topic router: too many topics or events (" + std::to_string(groups.size()) +
                      " topics, " + std::to_string(event_count) + " events)");
  }

  auto text = std::make_shared<char[]>(std::max<std::size_t>(text_size, 1));
  char* out = text.get();
  auto keep = [&out](std::string_view s) {
    out = std::copy(s.begin(), s.end(), out);
    return std::string_view(out - s.size(), s.size());
  };

  topics_.reserve(groups.size());
  events_.reserve(event_count);
  topic_begin_.reserve(groups.size() + 1);
  topic_slots_.resize(detail::table_capacity(groups.size()));
  event_slots_.resize(detail::table_capacity(event_count));
  name_slots_.resize(detail::table_capacity(event_count));
  const std::size_t name_mask = name_slots_.size() - 1;

  for (std::size_t g = 0; g < groups.size(); ++g) {
    const TopicGroup& group = groups[g];
    const auto t = static_cast<std::uint32_t>(g);
    if (group.topic.empty()) {
      throw ConfigError("topic router: topic name must not be empty (got \"\" for group #" +
                        std::to_string(g + 1) + ")");
    }
    topics_.push_back(keep(group.topic));
    if (const std::uint32_t first = detail::insert(topic_slots_, topics_, t, t);
        first != detail::kNoEntry) {
      throw ConfigError("topic router: topic " + quoted(group.topic) +
                        " is declared twice (groups #" + std::to_string(first + 1) + " and #" +
                        std::to_string(g + 1) + ")");
    }
    topic_begin_.push_back(static_cast<std::uint32_t>(events_.size()));

    for (std::size_t i = 0; i < group.events.size(); ++i) {
      const std::string& event = group.events[i];
      if (event.empty()) {
        throw ConfigError("topic router: event name must not be empty (got \"\" as event #" +
                          std::to_string(i + 1) + " of topic " + quoted(group.topic) + ")");
      }
      const auto e = static_cast<std::uint32_t>(events_.size());
      events_.push_back(keep(event));
      if (const std::uint32_t other = detail::insert(event_slots_, events_, e, t);
          other != detail::kNoEntry) {
        if (other == t) {
          throw ConfigError("topic router: event " + quoted(event) + " is listed twice in topic " +
                            quoted(group.topic));
        }
        throw ConfigError("topic router: event " + quoted(event) + " is mapped to topic " +
                          quoted(topics_[other]) + " and again to topic " + quoted(group.topic) +
                          "; an event has one topic");
      }
      // The text is known to be unique here, so the interned name is too.
      const EventName name(event);
      std::size_t s = detail::first_slot(name.hash(), name_mask);
      while (name_slots_[s].topic != detail::kNoEntry)
        s = (s + 1) & name_mask;
      name_slots_[s] = {name, t};
    }
  }
  topic_begin_.push_back(static_cast<std::uint32_t>(events_.size()));
  text_ = std::move(text);
}

}  // namespace emissions
