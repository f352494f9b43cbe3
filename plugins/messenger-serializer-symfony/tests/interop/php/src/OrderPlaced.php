<?php

declare(strict_types=1);

namespace App\Message;

/** The message both sides exchange, as a Symfony application would declare it. */
final class OrderPlaced
{
    private string $orderId;
    private int $amount;
    private \DateTimeImmutable $placedAt;

    public function __construct(string $orderId, int $amount, \DateTimeImmutable $placedAt)
    {
        $this->orderId = $orderId;
        $this->amount = $amount;
        $this->placedAt = $placedAt;
    }

    public function getOrderId(): string
    {
        return $this->orderId;
    }

    public function getAmount(): int
    {
        return $this->amount;
    }

    public function getPlacedAt(): \DateTimeImmutable
    {
        return $this->placedAt;
    }
}
