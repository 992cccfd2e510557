#!/usr/bin/env python3
"""Writes docs/conformance.md from docs/spec/*.md (the normative statements), the DecodeError
table in src/protocol/error.rs, the tests that assert each error, and the STATUS map below.
Run from the repository root after changing any of them: python3 tools/conformance.py"""
import glob, re, sys

# Statements enforced outside the error table (the encoder, or the decoder's field order),
# with the tests that prove them.
CODEC_EXTRA = {
    "v311": {
        "MQTT-1.5.3-3": ("kept, never stripped", ["codec::v3::publish_topics_may_hold_any_valid_unicode"]),
        "MQTT-2.2.2-1": ("encoder writes the required flags", ["codec::roundtrip::any_valid_packet_round_trips", "codec::v3::publish_acknowledgements"]),
        "MQTT-2.3.1-5": ("encoder writes no packet id at QoS 0", ["codec::v3::publish_each_qos_and_flag"]),
        "MQTT-3.1.2-11": ("WILL_QOS_WITHOUT_WILL, WILL_RETAIN_WITHOUT_WILL; will fields read only when the flag is set, extra bytes refused (TRAILING_BYTES)", ["codec::v3::connect_invalid"]),
        "MQTT-3.1.2-18": ("fields read only when their flag is set; extra bytes refused", ["codec::v3::connect_invalid"]),
        "MQTT-3.1.2-19": ("a flagged field that is missing is refused (TRUNCATED)", ["codec::v3::connect_invalid"]),
        "MQTT-3.1.2-20": ("as MQTT-3.1.2-18", ["codec::v3::connect_invalid"]),
        "MQTT-3.1.2-21": ("as MQTT-3.1.2-19", ["codec::v3::connect_invalid"]),
        "MQTT-3.1.3-1": ("fields decoded and encoded in this order", ["codec::v3::connect_with_will_username_password"]),
        "MQTT-3.1.3-3": ("client id is the first payload field", ["codec::v3::connect_minimal"]),
        "MQTT-3.1.3-4": ("INVALID_UTF8 / UTF8_NULL on the client id", ["codec::v3::connect_invalid"]),
        "MQTT-3.1.3-10": ("will topic checked as a topic name", ["codec::v3::connect_invalid"]),
        "MQTT-3.1.3-11": ("user name checked as UTF-8", ["codec::v3::connect_invalid"]),
        "MQTT-3.3.2-1": ("topic checked as UTF-8", ["codec::v3::publish_invalid"]),
        "MQTT-3.6.1-1": ("RESERVED_FLAGS", ["codec::v3::publish_acknowledgements"]),
        "MQTT-3.8.1-1": ("RESERVED_FLAGS", ["codec::v3::subscribe_invalid"]),
        "MQTT-3.8.3-1": ("filters checked as UTF-8", ["codec::v3::subscribe_invalid"]),
        "MQTT-3.10.1-1": ("RESERVED_FLAGS", ["codec::v3::unsubscribe_and_unsuback"]),
        "MQTT-3.10.3-1": ("filters checked as UTF-8, non-empty", ["codec::v3::unsubscribe_and_unsuback"]),
        "MQTT-3.10.3-2": ("NO_TOPIC_FILTERS", ["codec::v3::unsubscribe_and_unsuback"]),
        "MQTT-3.14.1-1": ("RESERVED_FLAGS", ["codec::v3::ping_and_disconnect"]),
        "MQTT-4.7.3-2": ("UTF8_NULL", ["codec::v3::publish_invalid", "codec::v3::subscribe_invalid"]),
        "MQTT-4.7.3-3": ("2-byte length; longer strings cannot be encoded (EncodeError::FieldTooLong)", ["codec::roundtrip::any_valid_packet_round_trips"]),
    },
    "v5": {
        "MQTT-1.5.4-3": ("kept, never stripped", ["codec::v3::publish_topics_may_hold_any_valid_unicode"]),
        "MQTT-1.5.7-1": ("both strings of a User Property checked", ["codec::props_v5::connect_property_values"]),
        "MQTT-2.2.1-2": ("encoder writes no packet id at QoS 0", ["codec::v3::publish_each_qos_and_flag"]),
        "MQTT-2.2.2-1": ("encoder writes property length 0", ["codec::v5::pings_v5", "codec::roundtrip::any_valid_packet_round_trips"]),
        "MQTT-3.1.2-16": ("fields read only when their flag is set; extra bytes refused", ["codec::v3::connect_invalid"]),
        "MQTT-3.1.2-17": ("a flagged field that is missing is refused (TRUNCATED)", ["codec::v3::connect_invalid"]),
        "MQTT-3.1.2-18": ("as MQTT-3.1.2-16", ["codec::v3::connect_invalid"]),
        "MQTT-3.1.2-19": ("as MQTT-3.1.2-17", ["codec::v5::connect_v5_allows_a_password_without_a_user_name"]),
        "MQTT-3.1.3-1": ("fields decoded and encoded in the 5.0 order", ["codec::v5::connect_with_properties_and_will_properties"]),
        "MQTT-3.1.3-3": ("client id is the first payload field", ["codec::v5::connect_with_properties_and_will_properties"]),
        "MQTT-3.1.3-4": ("INVALID_UTF8 / UTF8_NULL on the client id", ["codec::v3::connect_invalid"]),
        "MQTT-3.1.3-11": ("will topic checked as a topic name", ["codec::v3::connect_invalid"]),
        "MQTT-3.1.3-12": ("user name checked as UTF-8", ["codec::v3::connect_invalid"]),
        "MQTT-3.3.2-1": ("topic checked as UTF-8", ["codec::v3::publish_invalid"]),
        "MQTT-3.3.2-13": ("Response Topic checked as UTF-8", ["codec::v5::publish_v5_invalid_properties"]),
        "MQTT-3.3.2-14": ("WILDCARD_IN_TOPIC_NAME on a Response Topic", ["codec::v5::publish_v5_invalid_properties"]),
        "MQTT-3.3.2-19": ("Content Type checked as UTF-8", ["codec::v5::publish_v5_invalid_properties"]),
        "MQTT-3.6.1-1": ("RESERVED_FLAGS", ["codec::v3::publish_acknowledgements"]),
        "MQTT-3.8.1-1": ("RESERVED_FLAGS", ["codec::v3::subscribe_invalid"]),
        "MQTT-3.8.3-1": ("filters checked as UTF-8", ["codec::v3::subscribe_invalid"]),
        "MQTT-3.10.1-1": ("RESERVED_FLAGS", ["codec::v3::unsubscribe_and_unsuback"]),
        "MQTT-3.10.3-1": ("filters checked as UTF-8, non-empty", ["codec::v3::unsubscribe_and_unsuback"]),
        "MQTT-3.10.3-2": ("NO_TOPIC_FILTERS", ["codec::v5::subscribe_v5_invalid"]),
        "MQTT-3.14.1-1": ("RESERVED_FLAGS (the broker answers DISCONNECT 0x81)", ["codec::v3::ping_and_disconnect"]),
        "MQTT-3.15.1-1": ("RESERVED_FLAGS", ["codec::v5::auth_v5"]),
        "MQTT-4.7.3-2": ("UTF8_NULL", ["codec::v3::publish_invalid"]),
        "MQTT-4.7.3-3": ("2-byte length; longer strings cannot be encoded (EncodeError::FieldTooLong)", ["codec::roundtrip::any_valid_packet_round_trips"]),
    },
}

# Broker statements proved by the integration tests: (test, 3.1.1 ids, 5.0 ids).
BROKER_TESTS = [
    ("expiry_v5::a_qos2_exchange_under_way_is_finished_even_after_the_expiry", "", "4.3.3-7 4.3.3-13"),
    ("properties_v5::a_wills_user_properties_keep_their_order", "", "3.1.3-10"),
    ("connack_v5::nothing_after_a_refused_connect_is_processed", "", "3.1.4-6"),
    ("enhanced_auth_v5::an_unknown_method_and_anonymous_clients_are_refused", "", "3.1.4-2"),
    ("password_file::only_the_right_password_gets_in_in_both_versions", "", "3.1.4-2"),
    ("connack_v5::a_refused_connack_says_why_unless_the_client_declined", "", "3.2.2-19 3.1.2-29"),
    ("enhanced_auth_v5::scram_authenticates_and_the_client_can_verify_the_server", "", "3.15.2-1"),
    ("publish_qos::v5_receive_maximum_limits_publishes_until_pubcomp", "", "4.9.0-1"),
    ("flow_control_v5::a_message_over_the_clients_maximum_packet_size_is_discarded_not_sent", "", "3.1.2-24 3.1.2-25"),
    ("flow_control_v5::no_local_keeps_a_clients_own_messages_from_it", "", "3.8.3-3"),
    ("topic_alias_v5::a_clients_aliases_stand_for_the_topics_it_set_them_to", "", "3.1.2-27"),
    # The connection engine without a socket (src/connection/engine/tests.rs, `cargo test --lib`).
    ("engine::each_connect_refusal_gets_its_connack_in_each_version", "3.1.3-8 3.1.2-2 3.1.0-1", "3.1.2-2 3.1.0-1"),
    ("engine::the_connect_timeout_then_the_keep_alive_set_the_deadline", "3.1.2-24", "3.1.2-22"),
    ("engine::topic_aliases_work_both_ways", "", "3.1.2-26 3.1.2-27"),
    ("engine::the_will_goes_out_on_every_ending_but_a_normal_disconnect", "3.1.2-8 3.14.4-3", "3.1.2-8 3.14.4-3"),
    ("engine::enhanced_authentication_exchanges_auth_packets_then_reauthenticates", "", "4.12.0-5"),
    ("topic_alias_v5::the_server_uses_aliases_toward_a_client_that_accepts_them", "", "3.1.2-26"),
    ("enhanced_auth_v5::scram_authenticates_and_the_client_can_verify_the_server", "", "4.12.0-2 4.12.0-5"),
    ("enhanced_auth_v5::a_wrong_password_or_unknown_user_is_not_authorized", "", "4.12.0-4"),
    ("enhanced_auth_v5::an_unknown_method_and_anonymous_clients_are_refused", "", "4.12.0-1"),
    ("enhanced_auth_v5::a_packet_other_than_auth_during_the_exchange_is_a_protocol_error", "", "3.1.2-30"),
    ("enhanced_auth_v5::re_authentication_succeeds_for_the_same_user_and_ends_the_connection_otherwise", "", "4.12.1-1 4.12.1-2"),
    ("enhanced_auth_v5::auth_from_a_client_that_used_no_method_is_a_protocol_error", "", "4.12.0-6 4.12.0-7"),
    ("expiry_v5::a_queued_message_that_expires_is_not_delivered_and_the_rest_carry_what_is_left", "", "3.3.2-5 3.3.2-6"),
    ("expiry_v5::an_expired_retained_message_is_not_sent_and_a_live_one_carries_what_is_left", "", "3.3.2-5 3.3.2-6"),
    ("session::tests::a_slice_skips_messages_that_expired_while_queued (unit: a QoS 0 run taken out whole)", "", "3.3.2-5"),
    ("properties_v5::message_properties_are_forwarded_untouched", "", "3.3.2-4 3.3.2-15 3.3.2-16 3.3.2-17 3.3.2-18 3.3.2-20"),
    ("will_delay_v5::reconnecting_within_the_delay_cancels_the_will", "", "3.1.3-9"),
    ("connack_v5::server_keep_alive_caps_what_a_client_asks_for", "", "3.2.2-21 3.2.2-22"),
    ("connack_v5::response_information_answers_only_a_client_that_asks", "", "3.1.2-28"),
    ("connack_v5::a_reason_string_explains_a_server_disconnect_unless_the_client_declined", "", "3.1.2-29 3.14.2-3"),
    ("topic_alias_v5::a_clients_aliases_stand_for_the_topics_it_set_them_to", "", "3.3.2-12"),
    ("topic_alias_v5::the_server_uses_aliases_toward_a_client_that_accepts_them", "", "3.3.2-8 3.3.2-11"),
    ("topic_alias_v5::aliases_do_not_outlive_the_connection", "", "3.3.2-7"),
    ("malformed::each_malformed_input_closes_only_its_connection", "", "3.3.2-8 3.3.2-9"),
    ("shared_v5::malformed_share_filters_are_refused_and_connack_announces_the_feature", "", "4.8.2-1 4.8.2-2"),
    ("shared_v5::each_message_goes_to_one_member_in_turn", "", "4.8.2-3"),
    ("session::tests::take_shared_takes_unfinished_shared_deliveries_and_frees_their_ids", "", "4.8.2-4 4.8.2-5"),
    ("shared_v5::no_local_on_a_shared_subscription_is_a_protocol_error", "", "3.8.3-4"),
    ("shared_v5::a_message_refused_by_its_member_is_discarded_not_passed_on", "", "4.8.2-6"),
    ("publish_qos::qos0_goes_out_with_qos0_no_packet_id_and_no_dup", "4.3.1-1 2.3.1-5 3.3.1-2", "4.3.1-1 2.2.1-2 3.3.1-2"),
    ("publish_qos::qos1_handshake_in_both_directions", "2.3.1-6 3.3.1-3 3.3.4-1 4.3.2-1 4.3.2-2", "2.2.1-5 3.3.1-3 3.3.4-1 4.3.2-1 4.3.2-2 4.3.2-4"),
    ("publish_qos::qos2_handshake_in_both_directions", "4.3.3-1 4.3.3-2 2.3.1-6", "4.3.3-1 4.3.3-2 4.3.3-4 4.3.3-8 4.3.3-11 2.2.1-5"),
    ("publish_qos::delivered_qos_is_the_minimum_of_published_and_granted", "3.8.4-6", "3.8.4-8"),
    ("publish_qos::order_is_kept_per_topic_for_200_qos1_messages", "4.6.0-5 4.6.0-6", "4.6.0-5 4.6.0-6"),
    ("publish_qos::v311_inflight_window_holds_the_third_message_until_a_puback", "2.3.1-4", ""),
    ("publish_qos::v5_receive_maximum_limits_publishes_until_pubcomp", "", "3.3.4-9 3.3.4-10"),
    ("publish_qos::packet_ids_are_never_reused_while_in_flight", "2.3.1-4", "2.2.1-4"),
    ("publish_qos::inbound_qos2_duplicate_is_acknowledged_but_delivered_once", "4.3.3-2", "4.3.3-10 4.3.3-11 4.3.3-12"),
    ("publish_qos::v5_acks_say_no_matching_subscribers", "", "3.4.2-1 3.5.2-1"),
    ("publish_qos::v5_failed_acknowledgements_end_the_exchange_and_free_the_window", "", "4.4.0-2"),
    ("publish_qos::pubrel_for_an_unknown_id_is_still_completed", "", "3.7.2-1"),
    ("subscribe::suback_grants_the_minimum_of_requested_and_maximum_qos", "3.8.4-1 3.8.4-2 3.8.4-4 3.8.4-5 3.9.3-1", "3.8.4-1 3.8.4-2 3.8.4-5 3.8.4-6 3.8.4-7 3.9.3-1"),
    ("subscribe::malformed_filters_are_refused_and_the_connection_stays_up", "4.7.1-2 4.7.1-3 3.9.3-2", "4.7.1-1 4.7.1-2 3.9.3-2"),
    ("subscribe::overlapping_subscriptions_deliver_one_copy_at_the_highest_qos", "3.3.5-1", "3.3.4-2"),
    ("subscribe::v5_one_copy_carries_every_matching_subscription_identifier", "", "3.3.4-3 3.3.4-4"),
    ("subscribe::subscribing_again_replaces_the_qos", "3.8.4-3", "3.8.4-3"),
    ("subscribe::unsubscribe_stops_delivery_and_unsuback_answers_each_filter", "3.10.4-1 3.10.4-2 3.10.4-4 3.10.4-5 3.10.4-6", "3.10.4-1 3.10.4-2 3.10.4-4 3.10.4-5 3.10.4-6 3.11.3-1 3.11.3-2"),
    ("subscribe::unsubscribe_completes_a_qos2_delivery_already_started", "3.10.4-3", "3.10.4-3"),
    ("wildcard::spec_examples_of_section_4_7_end_to_end", "4.7.1-2 4.7.1-3 4.7.2-1 4.7.3-4 3.3.2-3", "4.7.1-1 4.7.1-2 4.7.2-1 4.7.3-4 3.3.2-3"),
    ("wildcard::wildcards_at_the_first_level_do_not_match_dollar_topics", "4.7.2-1", "4.7.2-1"),
    ("retain::retained_messages_are_sent_on_subscribe_with_retain_set", "3.3.1-5 3.3.1-6 3.3.1-8 3.3.1-12", "3.3.1-5 3.3.1-8 3.3.1-9"),
    ("retain::delivery_to_an_existing_subscription_clears_retain", "3.3.1-9", "3.3.1-12"),
    ("retain::a_newer_retained_message_replaces_the_old_one", "3.3.1-5 3.3.1-7", "3.3.1-5"),
    ("retain::an_empty_retained_payload_deletes_the_retained_message", "3.3.1-10 3.3.1-11", "3.3.1-6 3.3.1-7"),
    ("retain::v5_retain_handling", "", "3.3.1-9 3.3.1-10 3.3.1-11 3.8.4-4"),
    ("retain::v5_retain_as_published", "", "3.3.1-12 3.3.1-13"),
    ("retain::retained_messages_outlive_the_publishers_session", "3.1.2-7", ""),
    ("session::persistent_session_keeps_subscriptions_and_queues_qos1_and_qos2", "3.1.2-4 3.1.2-5 3.2.2-2 3.2.2-3 4.5.0-1", "3.1.2-5 3.1.2-6 3.1.2-23 3.2.2-3 4.5.0-1"),
    ("session::unacknowledged_qos1_is_resent_with_dup_and_the_same_id", "4.4.0-1 3.3.1-1 4.6.0-1 2.3.1-3", "4.4.0-1 3.3.1-1"),
    ("session::released_qos2_gets_pubrel_and_unreceived_qos2_gets_publish_on_reconnect", "4.4.0-1", "4.4.0-1 4.3.3-5 4.3.3-6"),
    ("session::inbound_qos2_state_survives_a_reconnect", "4.3.3-2", "4.3.3-10 4.3.3-11"),
    ("session::clean_session_discards_subscriptions_and_queued_messages", "3.1.2-6 3.2.2-1", "3.1.2-4 3.2.2-2"),
    ("session::v5_session_is_discarded_when_its_expiry_interval_has_passed", "", "3.1.2-23 4.1.0-2"),
    ("session::v5_expiry_timer_of_an_earlier_connection_spares_a_resumed_session", "", "4.1.0-1"),
    ("connect::session_present_reflects_a_kept_session", "3.2.2-1 3.2.2-2", "3.2.2-2 3.2.2-3"),
    ("connect::empty_client_id_v311_needs_clean_session", "3.1.3-6 3.1.3-7 3.1.3-8", ""),
    ("connect::empty_client_id_v5_gets_an_assigned_one", "", "3.1.3-6 3.1.3-7 3.2.2-16"),
    ("connect::unsupported_protocol_level_gets_return_code_1", "3.1.2-2", "3.1.2-2"),
    ("connect::first_packet_must_be_connect", "3.1.0-1", "3.1.0-1"),
    ("connect::second_connect_is_a_protocol_error", "3.1.0-2", "3.1.0-2"),
    ("connect::every_version_connects", "3.12.4-1", "3.12.4-1"),
    ("will::socket_closed_without_disconnect_publishes_the_will", "3.1.2-8", "3.1.2-8"),
    ("will::keep_alive_timeout_publishes_the_will", "3.1.2-24", "3.1.2-22"),
    ("will::normal_disconnect_discards_the_will", "3.14.4-3 3.1.2-10", "3.14.4-3 3.1.2-10"),
    ("will::v5_disconnect_with_an_error_code_publishes_the_will", "", "3.1.2-8"),
    ("will::will_qos_is_honoured", "3.1.2-9", "3.1.2-9"),
    ("will::will_retain_is_honoured", "3.1.2-16 3.1.2-17", "3.1.2-14 3.1.2-15"),
    ("keepalive::pingreq_is_answered_with_pingresp", "3.12.4-1", "3.12.4-1"),
    ("keepalive::silent_client_is_closed_after_one_and_a_half_keep_alives", "3.1.2-24", "3.1.2-22"),
    ("takeover::second_connection_closes_the_first", "3.1.4-2", "3.1.4-3"),
    ("takeover::persistent_session_keeps_its_subscriptions_across_a_takeover", "3.2.2-2", "3.2.2-3"),
    ("takeover::unacknowledged_message_is_resent_to_the_new_connection", "4.4.0-1", "4.4.0-1"),
    # Across a restart of the broker on its store ([persistence], issue 17).
    ("persistence::in_flight_messages_resume_after_a_restart_at_the_step_they_reached", "4.4.0-1 3.3.1-1", "4.4.0-1 3.3.1-1 4.3.3-5"),
    ("persistence::an_inbound_qos2_id_awaiting_pubrel_survives_a_restart", "4.3.3-2", "4.3.3-10"),
    ("persistence::queued_messages_survive_a_restart_in_order_and_are_stored_once", "4.6.0-6", "4.6.0-6"),
    ("takeover::clean_takeover_discards_the_old_session", "3.1.2-6", "3.1.2-4"),
    ("malformed::each_malformed_input_closes_only_its_connection", "4.8.0-1 2.2.2-2", "4.13.1-1 2.1.3-1 3.2.2-18 3.3.4-6"),
    ("connect::a_will_the_server_cannot_honour_is_refused", "3.2.2-5 3.1.4-5", "3.2.2-12 3.2.2-13 3.2.2-7 3.2.2-8"),
    ("connect::anonymous_refused_when_configured", "3.2.2-5 3.1.4-5", "3.2.2-7"),
    ("connect::every_version_connects", "3.2.0-1 3.1.4-4 3.1.3-5", "3.2.0-1 3.1.4-5 3.1.3-5"),
    ("connect::second_connect_is_a_protocol_error", "", "3.2.0-2 3.14.0-1 3.14.4-1 3.14.4-2"),
    ("connect::shutdown_sends_v5_clients_server_shutting_down", "", "3.14.2-1 3.14.4-1 3.14.4-2"),
    ("malformed::random_garbage_after_connect_never_breaks_the_broker", "3.1.4-1", "3.1.4-1"),
    ("subscribe::suback_grants_the_minimum_of_requested_and_maximum_qos", "2.3.1-7", "2.2.1-6"),
    ("session::persistent_session_keeps_subscriptions_and_queues_qos1_and_qos2", "4.1.0-1 4.1.0-2 3.1.4-3", "4.1.0-1 3.1.4-4"),
    ("session::unacknowledged_qos1_is_resent_with_dup_and_the_same_id", "4.3.2-1", "4.3.2-3 4.3.3-3 4.6.0-1"),
    ("will::normal_disconnect_discards_the_will", "3.1.2-12", "3.1.2-7"),
    ("publish_qos::v5_receive_maximum_limits_publishes_until_pubcomp", "", "4.9.0-2 4.9.0-3"),
    ("codec::v3::publish_invalid", "4.7.1-1", "4.7.0-1"),
    ("codec::roundtrip::any_valid_packet_round_trips", "", "3.2.2-1 3.6.2-1"),
    ("connect::empty_client_id_v311_needs_clean_session", "3.1.3-9", ""),
    ("will::will_qos_is_honoured", "", "3.1.2-12"),
    ("subscribe::suback_grants_the_minimum_of_requested_and_maximum_qos", "", "3.2.2-10"),
    ("connect::anonymous_refused_when_configured", "", "4.13.2-1"),
    ("connect::a_will_the_server_cannot_honour_is_refused", "", "4.13.2-1"),
    ("connect::second_connect_is_a_protocol_error", "", "4.13.2-1"),
    ("conformance_gaps::a_malformed_v311_connect_is_closed_without_connack", "3.2.2-6", ""),
    ("conformance_gaps::each_client_id_resumes_its_own_session_state", "3.1.3-2", "3.1.3-2"),
    ("conformance_gaps::a_qos1_packet_id_reused_after_its_puback_is_a_new_message", "4.3.2-2", "4.3.2-5"),
    ("conformance_gaps::v5_a_qos2_packet_id_refused_in_pubrec_is_free_for_a_new_message", "", "4.3.3-9"),
    ("conformance_gaps::v5_connack_announces_a_maximum_qos_below_2_and_subscribe_still_accepts_any_qos", "", "3.2.2-9 3.2.2-10"),
    ("conformance_gaps::v311_wildcard_filters_get_0x80_when_wildcards_are_turned_off", "3.8.3-2", ""),
    # Issue 14: robustness and conformance edges.
    ("protocol_errors::each_protocol_error_gets_its_exact_answer_in_every_version", "4.8.0-1 2.3.1-1 3.1.0-2", "4.13.1-1 3.1.0-2 3.14.4-1 3.14.4-2 4.3.3-11"),
    ("protocol_errors::a_connect_with_a_property_it_may_not_carry_gets_connack_0x81", "", "4.13.1-1"),
    ("protocol_errors::a_client_still_writing_reads_the_disconnect_that_ends_its_connection", "", "3.14.4-2 4.13.1-1"),
    ("protocol_errors::a_client_still_writing_reads_the_disconnect_of_a_shutdown", "", "3.14.4-2"),
    ("takeover::a_session_that_ends_with_its_connection_is_never_resumed", "3.1.2-6 3.2.2-1 3.2.2-2 3.1.2-4", "3.1.2-4 3.1.2-5 3.2.2-2 3.2.2-3"),
    ("takeover::a_connection_taken_over_leaves_no_ghost_subscription", "3.1.2-6", "3.1.2-4"),
    ("retained_stream::a_slow_dashboard_gets_all_100k_retained_statuses_at_qos0", "3.3.1-6 3.3.1-8", "3.3.1-9"),
    ("retained_stream::a_slow_dashboard_gets_all_100k_retained_statuses_at_qos1", "3.3.1-6 3.3.1-8", "3.3.1-9"),
    ("retained_stream::a_retained_stream_resumes_with_its_session", "3.1.2-4 4.4.0-1", "3.1.2-5 4.4.0-1"),
    ("retained_stream::unsubscribing_stops_the_retained_stream", "3.10.4-2 3.10.4-3", "3.10.4-2 3.10.4-3"),
    ("flow_control_v5::the_clients_maximum_packet_size_holds_for_every_packet", "", "3.1.2-24 3.14.2-3"),
    ("protocol_errors::a_client_that_never_stops_writing_is_closed_all_the_same", "", "3.14.4-2"),
    ("enhanced_auth_v5::an_auth_with_a_property_it_may_not_carry_is_malformed", "", "4.13.1-1"),
    ("enhanced_auth_v5::a_challenge_over_the_clients_maximum_packet_size_ends_the_handshake_with_0x95", "", "3.1.2-24"),
    ("engine::after_a_takeover_the_old_connection_changes_nothing", "3.1.2-6", "3.1.2-4"),
    ("keepalive::a_packet_arriving_slowly_keeps_its_connection_open", "3.1.2-24", "3.1.2-22"),
    # Issue 16: security, transports.
    ("acl::a_publish_the_acl_does_not_allow_is_refused_in_v5_and_dropped_in_3_1_1", "3.3.5-2", ""),
    ("websocket::a_text_frame_closes_the_connection", "6.0.0-1", "6.0.0-1"),
    ("websocket::mqtt_packets_travel_in_binary_frames_split_or_together", "6.0.0-1 6.0.0-2 6.0.0-4", "6.0.0-1 6.0.0-2 6.0.0-4"),
    ("websocket::wss_is_websocket_over_tls", "6.0.0-2 6.0.0-4", "6.0.0-2 6.0.0-4"),
    ("flow_control_v5::a_refusal_drops_its_reason_string_to_fit_the_clients_limit", "", "3.2.2-19"),
]

# Statements the codec detects but whose required answer (CONNACK, close) is the broker's.
PARTIAL = set()

# 5.0 statements that limit a property Roost never sends on that packet: met because no code
# path sets it (the packet is built with empty properties), not shown by a test. Listed as
# "n/a" and not counted as done.
NEVER_SENT = {
    "MQTT-3.2.2-20": "CONNACK carries no User Property",
    "MQTT-3.4.2-2": "PUBACK carries no Reason String", "MQTT-3.4.2-3": "PUBACK carries no User Property",
    "MQTT-3.5.2-2": "PUBREC carries no Reason String", "MQTT-3.5.2-3": "PUBREC carries no User Property",
    "MQTT-3.6.2-2": "PUBREL carries no Reason String", "MQTT-3.6.2-3": "PUBREL carries no User Property",
    "MQTT-3.7.2-2": "PUBCOMP carries no Reason String", "MQTT-3.7.2-3": "PUBCOMP carries no User Property",
    "MQTT-3.9.2-1": "SUBACK carries no Reason String", "MQTT-3.9.2-2": "SUBACK carries no User Property",
    "MQTT-3.11.2-1": "UNSUBACK carries no Reason String", "MQTT-3.11.2-2": "UNSUBACK carries no User Property",
    "MQTT-3.14.2-2": "the server's DISCONNECT carries no Session Expiry Interval",
    "MQTT-3.14.2-4": "DISCONNECT carries no User Property",
    "MQTT-3.15.2-2": "AUTH carries no Reason String", "MQTT-3.15.2-3": "AUTH carries no User Property",
    "MQTT-3.3.4-5": "overlapping subscriptions get one PUBLISH carrying every identifier, never several",
}


# Statements no test can prove, each with its status, why, and optionally tests of the server's
# side of it: client obligations the phrasing test in owner() misses, statements about transport
# or conformance in general, and features Roost does not have. None of these counts as done.
BEYOND = "conformance_gaps::a_publish_beyond_what_the_server_announced_closes_the_connection"
OTHER_STATUS = {
    "v311": {
        "MQTT-3.1.2-23": ("client obligation", "the server's side, closing a silent client, is MQTT-3.1.2-24"),
        "MQTT-3.14.4-1": ("client obligation", "the server closes its side when it reads DISCONNECT"),
        "MQTT-3.14.4-2": ("client obligation", ""),
        "MQTT-7.1.2-1": ("client obligation", ""),
        "MQTT-4.8.0-2": ("met by design (untested)", "the only failure while a packet is processed is a socket read or write error, which ends the connection (`Close::Io`)"),
        "MQTT-7.0.0-1": ("n/a: no outbound connections", "Roost makes no connections to other servers (no bridge)"),
        "MQTT-7.0.0-2": ("met by design", "no extension is needed: stock rumqttc clients interoperate (`connect::rumqttc_v4_and_v5_exchange_a_message`)"),
        "MQTT-7.1.1-1": ("met by design: TCP transport", "every listener is TCP"),
        "MQTT-6.0.0-3": ("client obligation", "a client offering no subprotocol is served, as Mosquitto does; one offering only others gets HTTP 400", ["websocket::mqttv3_1_and_no_subprotocol_are_served_too", "websocket::a_bad_upgrade_gets_an_http_error"]),
    },
    "v5": {
        "MQTT-3.1.2-20": ("client obligation", "the server's side, closing a silent client, is MQTT-3.1.2-22"),
        "MQTT-3.2.2-4": ("client obligation", ""),
        "MQTT-3.2.2-5": ("client obligation", ""),
        "MQTT-3.2.2-11": ("client obligation", "a PUBLISH above the Maximum QoS gets DISCONNECT 0x9B", [BEYOND]),
        "MQTT-3.2.2-14": ("client obligation", "a retained PUBLISH while retain is off gets DISCONNECT 0x9A", [BEYOND]),
        "MQTT-3.1.3-8": ("n/a: never rejected", "Roost accepts every 5.0 ClientID; an empty one gets an assigned id (MQTT-3.1.3-6)"),
        "MQTT-4.2.0-1": ("met by design: TCP transport", "every listener is TCP"),
        "MQTT-6.0.0-3": ("client obligation", "a client offering no subprotocol is served, as Mosquitto does; one offering only others gets HTTP 400", ["websocket::mqttv3_1_and_no_subprotocol_are_served_too", "websocket::a_bad_upgrade_gets_an_http_error"]),
    },
}


def load_rules():
    src = open("src/protocol/error.rs").read()
    rx = r'\n    (\w+) = ([\w:]+),\s*(?:None|Some\("([^"]+)"\)),\s*(?:None|Some\("([^"]+)"\)),\s*"([^"]+)"'
    return re.findall(rx, src)


def load_tests():
    tests = {}
    for path in sorted(glob.glob("tests/codec/*.rs")):
        current = None
        for line in open(path):
            m = re.match(r"\s*(?:pub )?fn (\w+)\(", line)
            if m:
                current = "codec::" + path.split("/")[-1][:-3] + "::" + m.group(1)
            for m in re.finditer(r"error::([A-Z_0-9]+)", line):
                if current:
                    tests.setdefault(m.group(1), set()).add(current)
    return tests


def statements(path):
    rows = []
    for line in open(path):
        m = re.match(r"\| (MQTT-[\d.]+-\d+) \| ([^|]*) \| (.*) \|\s*$", line)
        if m:
            rows.append(m.groups())
    return rows


# Client obligations the phrasing test below misses (the clause names the server first).
CLIENT_OBLIGATIONS = {"MQTT-3.1.2-21", "MQTT-4.12.0-3"}


def owner(version, section, text, sid=""):
    t = text.lstrip("[").lower()
    if sid in CLIENT_OBLIGATIONS:
        return "client obligation"
    if section.startswith("6 "):
        return "not yet: WebSocket transport (later issue)"
    if re.match(r"(the |a |each time a )?client", t) and "server" not in t.split("must")[0]:
        return "client obligation"
    if version == "v5" and re.search(r"alias|receive maximum|shared|subscription identifier|"
                                    r"authentication|auth |expiry|response|reason string|"
                                    r"user propert|payload format|problem information|no local|"
                                    r"retain handling|retain as published|maximum packet size|"
                                    r"server keep alive|will delay|assigned", t):
        return "not yet: issue 5"
    return "unclassified: add it to BROKER_TESTS or OTHER_STATUS"


def matrix(version, rules, tests):
    by_id = {}
    for name, reason, v3, v5, msg in rules:
        sid = v3 if version == "v311" else v5
        if sid and sid.startswith("MQTT-"):
            by_id.setdefault(sid, []).append(name)
    spec = "docs/spec/mqtt-3.1.1-statements.md" if version == "v311" else "docs/spec/mqtt-5.0-statements.md"
    col = 1 if version == "v311" else 2
    broker = {}
    for row in BROKER_TESTS:
        for sid in row[col].split():
            broker.setdefault("MQTT-" + sid, []).append(row[0])
    out = ["| statement | section | status | how / where | tests |", "|---|---|---|---|---|"]
    done = 0
    rows = statements(spec)
    for sid, section, text in rows:
        section = section.strip()
        if sid in by_id:
            names = by_id[sid]
            ts = sorted(set().union(*(tests.get(n, set()) for n in names))) + broker.get(sid, [])
            how = ", ".join(f"`{n}`" for n in names)
            status = "done (codec + broker)" if sid in broker else "done (codec)"
        elif sid in CODEC_EXTRA[version]:
            how, ts = CODEC_EXTRA[version][sid]
            status = "done (codec)"
        elif sid in broker:
            how, ts = "", broker[sid]
            status = "done (broker)"
        elif version == "v5" and sid in NEVER_SENT:
            how, ts = NEVER_SENT[sid], []
            status = "n/a: never sent"
        elif sid in OTHER_STATUS[version]:
            status, how, *more = OTHER_STATUS[version][sid]
            ts = more[0] if more else []
        else:
            how, ts = "", []
            status = "partial: codec detects; the broker closes" if sid in PARTIAL else owner(version, section, text, sid)
        if status.startswith("done"):
            done += 1
        short = text if len(text) < 110 else text[:107] + "..."
        tcol = "<br>".join(f"`{t}`" for t in ts)
        out.append(f"| {sid} | {section} | {status} | {how}{' — ' if how and short else ''}{short} | {tcol} |")
    return done, len(rows), "\n".join(out)


def check_broker_tests():
    """Every test BROKER_TESTS names exists, so the table cannot cite a test that is gone."""
    missing = []
    for name, _, _ in BROKER_TESTS:
        parts = name.split()[0].split("::")
        module, fn = parts[0], parts[-1]
        if module == "engine":
            path = "src/connection/engine/tests.rs"
        elif parts[:2] == ["session", "tests"]:
            path = "src/session/tests.rs"
        elif module == "codec":
            path = f"tests/codec/{parts[1]}.rs"
        else:
            path = f"tests/{module}.rs"
        try:
            text = open(path).read()
        except OSError:
            text = ""
        if not re.search(rf"\bfn {re.escape(fn)}\(", text):
            missing.append(f"{name} (looked in {path})")
    if missing:
        sys.exit("BROKER_TESTS names tests that do not exist:\n  " + "\n  ".join(missing))


def main():
    check_broker_tests()
    rules, tests = load_rules(), load_tests()
    d3, n3, m3 = matrix("v311", rules, tests)
    d5, n5, m5 = matrix("v5", rules, tests)
    codec = ["| 3.1.1 | 5.0 | rule (`protocol::error::` constant) | v5 reason | tests |", "|---|---|---|---|---|"]
    for name, reason, v3, v5, msg in rules:
        r = {"MALFORMED": "0x81", "PROTOCOL": "0x82"}.get(reason, reason.replace("ReasonCode::", ""))
        ts = "<br>".join(f"`{t}`" for t in sorted(tests.get(name, []))) or "**untested**"
        codec.append(f"| {v3 or '-'} | {v5 or '-'} | {msg} (`{name}`) | {r} | {ts} |")
    doc = f"""# Conformance

Every normative statement of MQTT 3.1.1 and MQTT 5.0 (OASIS, Appendix B of each; the full text
is in `docs/spec/`), what Roost does about it, and the test that proves it. Test names are
`<test crate>::<module>::<fn>`: `cargo test --test codec <fn>` runs one; `engine::<fn>` is a unit
test of the connection engine (`cargo test --lib engine::tests::<fn>`).

Status:
- **done (codec)**: enforced by `src/protocol` and tested byte for byte. For a "receiver MUST
  close" statement the codec refuses the packet; the broker closes on every decode error, which
  MQTT-4.8.0-1 (3.1.1) and MQTT-4.13.1-1 (5.0) track once.
- **done (broker)**: proved by a test in `tests/<area>.rs` (the `BROKER_TESTS` table of the tool).
- **partial**: detected, with the rest of the required behaviour owned by the issue named.
- **not yet: ...**: the issue or feature that will implement it.
- **client obligation**: binds clients; the broker checks it where another row says so.
- **met by design**: true of how Roost is built (TCP listeners, no extensions), not something a
  test can show; **untested** says a test could in principle, but none does.
- **n/a**: about something Roost never does (a property it never sends, connections to other
  servers, rejecting a 5.0 ClientID).
- **not yet: access control (later issue)**: needs ACLs, which Roost does not have yet.

This file is generated by `python3 tools/conformance.py` from `docs/spec/`, the error table in
`src/protocol/error.rs` and the tests; edit those, then re-run it.

Summary: MQTT 3.1.1 {d3} of {n3} statements done; MQTT 5.0 {d5} of {n5} done.

## Choices where the spec leaves room

- **Control characters and non-characters** in UTF-8 strings (U+0001..U+001F, U+007F..U+009F,
  U+FDD0..U+FDEF, U+xFFFE/U+xFFFF): the spec says they SHOULD NOT be sent and lets a receiver
  close the connection. Roost refuses them (`UTF8_DISALLOWED_CODE_POINT`), as Mosquitto does.
- **Non-minimal remaining lengths**: MQTT 5.0 forbids them (MQTT-1.5.5-1); 3.1.1 defines only
  the minimal encoding algorithm (2.2.3). Roost refuses them in every version.
- **MQTT 3.1 (`MQIsdp`)**: PUBREL/SUBSCRIBE/UNSUBSCRIBE may carry DUP (flags 0xA) as 3.1
  retransmissions did; Mosquitto accepts the same.
- **Topic filter syntax** (`#` last, wildcards alone in a level) is not a codec rule: a 5.0
  server answers a bad filter with SUBACK 0x8F rather than closing, so the topic module (issue 3)
  checks it. The codec checks filters are UTF-8 and non-empty.
- **Direction-dependent rules** (a client must not send a Subscription Identifier, MQTT-3.3.4-6;
  Topic Alias above the maximum) depend on connection state and belong to the broker; which
  packet types a server accepts is a codec setting (`DecodeLimits::accepts`), checked from the first
  byte.
- **0x81 or 0x82** (5.0 section 1.2): a property not valid for its packet, or of the wrong type
  or length, is malformed; Packet Identifier 0, an empty topic without a Topic Alias, a repeated
  property, a packet type a server never accepts (type 0 included) are protocol errors. A
  malformed 5.0 CONNECT gets a bare CONNACK with its code (Mosquitto closes without one). Each
  choice and its clause: `docs/decisions.md`, "Malformed Packet (0x81) or Protocol Error (0x82)".
- **Topic depth**: more than `limits.max_topic_levels` levels (200, as Mosquitto) is refused:
  PUBACK/PUBREC 0x90, SUBACK 0x8F, CONNACK 0x90 for a will topic.

## The codec's error table

Each `DecodeError` constant, the statements it enforces (ids, or the section where the
statement has no id) and the tests that assert it byte for byte.

{chr(10).join(codec)}

## MQTT 3.1.1

{m3}

## MQTT 5.0

{m5}
"""
    open("docs/conformance.md", "w").write(doc)
    print(f"3.1.1: {d3}/{n3} done; 5.0: {d5}/{n5} done")


main()
