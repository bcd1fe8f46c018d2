"""The test broker is a real Mosquitto speaking MQTT v5 with QoS 1."""

import aiomqtt

from tests.conftest import Broker


async def test_qos1_roundtrip_through_mosquitto(mqtt_broker: Broker) -> None:
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe("usage/probe/#", qos=1)
        await client.publish("usage/probe/event", b'{"n": 1}', qos=1)
        async for message in client.messages:
            assert message.topic.matches("usage/probe/event")
            assert message.payload == b'{"n": 1}'
            break
